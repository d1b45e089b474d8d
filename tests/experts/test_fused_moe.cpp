// The host forms of experts/'s fused kernels (router, permutation, SwiGLU)
// and the grouped-GEMM experts against ATen and the naive token loop
// (tests/kernel_checks.h; tests/gpu/test_kernels.cpp runs the same on a GPU).
#include "tests/kernel_checks.h"

using namespace moxie::testing;

TEST_CASE(
    "fused router (host form) matches the ATen router: softmax, sigmoid, renormalisation, bias") {
  for (const auto& c : router_cases()) {
    INFO("E=" << c.E << " K=" << c.K << " sigmoid=" << c.sigmoid << " renormalize=" << c.renormalize
              << " bias=" << c.bias);
    check_router(torch::kCPU, c);
  }
}

TEST_CASE("fused permute and unpermute (host form) match index_select and index_add, with drops") {
  check_permute(torch::kCPU, torch::kFloat);
  check_permute(torch::kCPU, torch::kBFloat16);
  check_permute(torch::kCPU, torch::kFloat, 17, 4, 8);
}

TEST_CASE("fused SwiGLU (host form) matches silu(g) * u, packed and split") {
  check_swiglu(torch::kCPU, torch::kFloat);
  check_swiglu(torch::kCPU, torch::kBFloat16);
}

TEST_CASE("grouped-GEMM experts (ATen's grouped matmul) match the token loop") {
  check_grouped_gemm(torch::kCPU, torch::kBFloat16);
}
