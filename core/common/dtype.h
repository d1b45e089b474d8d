// The element types moxie's kernels take, named without any CUDA header so
// that plain C++ can call the launchers.
#pragma once

namespace moxie::kernels {

enum class DType { kFloat32, kBFloat16 };

}  // namespace moxie::kernels
