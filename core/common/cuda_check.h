// Checks for CUDA runtime calls and kernel launches: a failure throws
// std::runtime_error naming the call, the file and the line (never exits).
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace moxie::kernels {

inline void cuda_check(cudaError_t r, const char* call, const char* file, int line) {
  if (r != cudaSuccess) {
    throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorString(r) + " (" + file +
                             ":" + std::to_string(line) + ")");
  }
}

}  // namespace moxie::kernels

#define MOXIE_CUDA_CHECK(call) ::moxie::kernels::cuda_check((call), #call, __FILE__, __LINE__)
// After a <<<...>>> launch: a bad configuration shows up here, not later.
#define MOXIE_LAUNCH_CHECK(name) \
  ::moxie::kernels::cuda_check(cudaGetLastError(), name, __FILE__, __LINE__)
