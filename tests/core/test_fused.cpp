// The host forms of core/'s fused kernels (RMSNorm, cross-entropy) against
// ATen: the same row arithmetic the CUDA kernels run (tests/kernel_checks.h;
// tests/gpu/test_kernels.cpp checks the kernels themselves on a GPU).
#include "tests/kernel_checks.h"

using namespace moxie::testing;

TEST_CASE("fused RMSNorm (host form) matches ATen, forward and backward") {
  check_rms_norm(torch::kCPU, torch::kFloat);
  check_rms_norm(torch::kCPU, torch::kBFloat16);
  check_rms_norm(torch::kCPU, torch::kFloat, 3,
                 2050);  // a row wider than a warp's stride many times over
}

TEST_CASE("fused cross-entropy (host form) matches ATen and makes no float32 logits") {
  check_cross_entropy(torch::kCPU, torch::kFloat);
  check_cross_entropy(torch::kCPU, torch::kBFloat16);
}
