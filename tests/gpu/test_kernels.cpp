// moxie's CUDA kernels against the ATen sequences they replace, in float32
// and bfloat16 (tolerances: tests/kernel_checks.h), and the trainer's GPU
// pieces that a CPU cannot exercise. Exit 77 with the reason where no GPU
// is visible (CI) or the build has no CUDA.
#define CATCH_CONFIG_RUNNER
#include <iostream>

#include "core/model/layers.h"
#include "experts/router.h"
#include "tests/kernel_checks.h"

using namespace moxie;
using namespace moxie::testing;

namespace {
const torch::Device kGpu(torch::kCUDA, 0);
}

TEST_CASE("CUDA RMSNorm kernel matches ATen") {
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    check_rms_norm(kGpu, dtype);
    check_rms_norm(kGpu, dtype, 4097, 2048);
  }
}

TEST_CASE("CUDA cross-entropy kernel matches ATen") {
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    check_cross_entropy(kGpu, dtype);
    check_cross_entropy(kGpu, dtype, 513, 32000);
  }
}

TEST_CASE("CUDA router kernel matches the ATen router") {
  for (const auto& c : router_cases()) {
    INFO("E=" << c.E << " K=" << c.K << " sigmoid=" << c.sigmoid);
    check_router(kGpu, c);
    check_router(kGpu, c, 4099);
  }
}

TEST_CASE("CUDA permute and unpermute kernels match index_select and index_add") {
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    check_permute(kGpu, dtype);
    check_permute(kGpu, dtype, 2048, 2, 1024);
  }
}

TEST_CASE("CUDA SwiGLU kernels match silu(g) * u") {
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    check_swiglu(kGpu, dtype);
    check_swiglu(kGpu, dtype, 999, 1408);
  }
}

TEST_CASE("grouped-GEMM experts on the GPU match the token loop") {
  check_grouped_gemm(kGpu, torch::kBFloat16);
}

TEST_CASE("CUDA multi-tensor AdamW matches ATen's fused AdamW") { check_multi_tensor_adamw(kGpu); }

TEST_CASE("the model's layers take the fused kernels on CUDA and agree with the CPU") {
  // RMSNormImpl and the router route CUDA tensors to the kernels; the same
  // module on the CPU takes ATen: the two must agree to float32 tolerance.
  torch::manual_seed(8);
  RMSNorm norm(64, 1e-5);
  auto x = torch::randn({10, 64});
  auto y_cpu = norm(x);
  norm->to(kGpu);
  MOXIE_CHECK_CLOSE(norm(x.to(kGpu)), y_cpu, 2e-5);
  MoEOptions o;
  o.num_experts = 8;
  o.top_k = 2;
  o.z_loss_coef = 1e-3;
  Router router(64, o);
  auto r_cpu = router(x);
  router->to(kGpu);
  auto r_gpu = router(x.to(kGpu));
  CHECK(torch::equal(r_gpu.expert_idx_TK.cpu(), r_cpu.expert_idx_TK));
  MOXIE_CHECK_CLOSE(r_gpu.weight_TK, r_cpu.weight_TK, 1e-5);
  MOXIE_CHECK_CLOSE(r_gpu.aux_loss, r_cpu.aux_loss, 1e-5);
}

int main(int argc, char** argv) {
#ifndef MOXIE_HAVE_CUDA
  std::cout << "SKIP: this build has no CUDA (CMake found no nvcc)\n";
  return 77;
#else
  if (!torch::cuda::is_available()) {
    std::cout << "SKIP: no CUDA device is visible; the kernel tests need a GPU\n";
    return 77;
  }
  return Catch::Session().run(argc, argv);
#endif
}
