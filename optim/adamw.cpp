// AdamW step. CPU: ATen's fused kernel (_fused_adamw_), one vectorised,
// multi-threaded pass over each parameter's weight, grad and moments. CUDA:
// moxie's multi-tensor kernel (optim/cuda), one launch per group that also
// reads bfloat16 grads as they are and rounds the fp32 master into the
// bfloat16 parameter in the same pass (ATen's needs float32 grads, a copy of
// every grad, and a second pass for the rounding).
#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/common/host.h"
#include "optim/cuda/adamw_rows.cuh"

#ifdef MOXIE_HAVE_CUDA
#include "optim/cuda/adamw_kernels.h"
#endif

namespace moxie {
namespace {

bool full_precision(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble;
}

// The tensors of one fused call: one group, one device, one dtype.
struct Bucket {
  torch::Device device;
  torch::ScalarType dtype;
  std::vector<torch::Tensor> weights, grads, exp_avgs, exp_avg_sqs, steps;
  std::vector<torch::Tensor> params_lowp, masters;  // rounded back after the update
};

Bucket& bucket_for(std::vector<Bucket>& buckets, const torch::Tensor& weight) {
  for (auto& b : buckets) {
    if (b.device == weight.device() && b.dtype == weight.scalar_type()) return b;
  }
  buckets.push_back(Bucket{weight.device(), weight.scalar_type(), {}, {}, {}, {}, {}, {}, {}});
  return buckets.back();
}

void check_param(const ParamGroup& group, size_t index) {
  const auto& p = group.params[index];
  const std::string where =
      "AdamW: parameter " + std::to_string(index) + " of group '" + group.name + "'";
  if (!p.defined()) throw std::invalid_argument(where + " is undefined");
  if (!p.is_floating_point()) throw std::invalid_argument(where + " is not floating point");
  // The fused kernel walks raw memory, so weight, grad and moments must share
  // one dense layout.
  if (!p.is_contiguous()) {
    throw std::invalid_argument(where +
                                " is not contiguous; make it contiguous before registering it");
  }
}

}  // namespace

AdamW::AdamW(std::vector<ParamGroup> groups, const OptimOptions& options)
    : groups_(std::move(groups)), options_(options) {
  torch::NoGradGuard no_grad;
  for (const auto& group : groups_) {
    std::vector<ParamState> states;
    std::vector<torch::Tensor> steps;
    for (size_t i = 0; i < group.params.size(); ++i) {
      check_param(group, i);
      const auto& p = group.params[i];
      ParamState s;
      if (!full_precision(p)) s.master = p.detach().to(torch::kFloat, false, /*copy=*/true);
      const auto& like = s.master.defined() ? s.master : p;
      s.exp_avg = torch::zeros_like(like, torch::MemoryFormat::Contiguous);
      s.exp_avg_sq = torch::zeros_like(like, torch::MemoryFormat::Contiguous);
      states.push_back(std::move(s));
      steps.push_back(torch::zeros({}, torch::dtype(torch::kFloat).device(p.device())));
    }
    state_.push_back(std::move(states));
    step_tensors_.push_back(std::move(steps));
  }
}

void AdamW::set_step(size_t group, size_t index, int64_t step) {
  state_.at(group).at(index).step = step;
  torch::NoGradGuard no_grad;
  step_tensors_.at(group).at(index).fill_(static_cast<double>(step));
}

void multi_tensor_adamw(const std::vector<torch::Tensor>& weights,
                        const std::vector<torch::Tensor>& grads,
                        const std::vector<torch::Tensor>& exp_avgs,
                        const std::vector<torch::Tensor>& exp_avg_sqs,
                        const std::vector<torch::Tensor>& lowps, const std::vector<int64_t>& steps,
                        double lr, double weight_decay, const OptimOptions& options) {
  const size_t n = weights.size();
  TORCH_CHECK(grads.size() == n && exp_avgs.size() == n && exp_avg_sqs.size() == n &&
                  lowps.size() == n && steps.size() == n,
              "multi_tensor_adamw: lists of different lengths");
  if (n == 0) return;
  const bool cuda = weights[0].is_cuda();
  std::vector<kernels::AdamWTensor> table(n);
  std::vector<kernels::AdamWChunk> chunks;
  for (size_t i = 0; i < n; ++i) {
    const auto& w = weights[i];
    TORCH_CHECK(w.scalar_type() == torch::kFloat && w.is_contiguous() && w.is_cuda() == cuda,
                "multi_tensor_adamw: weight ", i,
                " must be contiguous float32 on the first weight's device");
    for (const auto* t : {&exp_avgs[i], &exp_avg_sqs[i]}) {
      TORCH_CHECK(
          t->scalar_type() == torch::kFloat && t->is_contiguous() && t->numel() == w.numel(),
          "multi_tensor_adamw: moments of weight ", i, " must be contiguous float32 like it");
    }
    TORCH_CHECK(grads[i].numel() == w.numel() && grads[i].is_contiguous() &&
                    kernels::kernel_dtype(grads[i]),
                "multi_tensor_adamw: grad ", i,
                " must be contiguous float32 or bfloat16 of the weight's size");
    TORCH_CHECK(!lowps[i].defined() || (lowps[i].scalar_type() == torch::kBFloat16 &&
                                        lowps[i].is_contiguous() && lowps[i].numel() == w.numel()),
                "multi_tensor_adamw: low-precision copy ", i,
                " must be contiguous bfloat16 of the weight's size");
    TORCH_CHECK(steps[i] >= 1, "multi_tensor_adamw: step ", steps[i], " of weight ", i,
                " must be >= 1");
    auto& t = table[i];
    t.weight = w.data_ptr<float>();
    t.exp_avg = exp_avgs[i].data_ptr<float>();
    t.exp_avg_sq = exp_avg_sqs[i].data_ptr<float>();
    t.grad = grads[i].data_ptr();
    t.grad_bf16 = grads[i].scalar_type() == torch::kBFloat16;
    t.lowp = lowps[i].defined() ? lowps[i].data_ptr() : nullptr;
    t.numel = w.numel();
    const double step = static_cast<double>(steps[i]);
    t.decay = static_cast<float>(1.0 - lr * weight_decay);
    t.step_size = static_cast<float>(lr / (1.0 - std::pow(options.beta1, step)));
    t.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(options.beta2, step)));
    for (int64_t start = 0; start < t.numel; start += kernels::kAdamWChunkElements) {
      chunks.push_back({static_cast<int64_t>(i), start});
    }
  }
  kernels::AdamWHyper hyper;
  hyper.beta1 = static_cast<float>(options.beta1);
  hyper.beta2 = static_cast<float>(options.beta2);
  hyper.eps = static_cast<float>(options.eps);
  if (cuda) {
#ifdef MOXIE_HAVE_CUDA
    c10::cuda::CUDAGuard guard(weights[0].device());
    // The table travels as one small host-to-device copy; the caching
    // allocator keeps it until the kernel on this stream is done.
    const size_t table_bytes = table.size() * sizeof(table[0]);
    auto host = torch::empty(
        {static_cast<int64_t>(table_bytes + chunks.size() * sizeof(chunks[0]))}, torch::kByte);
    std::memcpy(host.data_ptr(), table.data(), table_bytes);
    std::memcpy(host.data_ptr<uint8_t>() + table_bytes, chunks.data(),
                chunks.size() * sizeof(chunks[0]));
    auto device = host.to(weights[0].device());
    const auto* base = device.data_ptr<uint8_t>();
    kernels::launch_adamw(reinterpret_cast<const kernels::AdamWTensor*>(base),
                          reinterpret_cast<const kernels::AdamWChunk*>(base + table_bytes),
                          static_cast<int64_t>(chunks.size()), hyper, kernels::current_stream());
#else
    TORCH_CHECK(false, "multi_tensor_adamw: this build has no CUDA");
#endif
    return;
  }
  for (const auto& c : chunks) {
    const auto& t = table[static_cast<size_t>(c.tensor)];
    const int64_t end = std::min(c.start + kernels::kAdamWChunkElements, t.numel);
    for (int64_t i = c.start; i < end; ++i) {
      const float g = t.grad_bf16 ? static_cast<float>(static_cast<const c10::BFloat16*>(t.grad)[i])
                                  : static_cast<const float*>(t.grad)[i];
      kernels::adamw_element(t.weight[i], t.exp_avg[i], t.exp_avg_sq[i], g, t, hyper);
      if (t.lowp) static_cast<c10::BFloat16*>(t.lowp)[i] = c10::BFloat16(t.weight[i]);
    }
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const auto& group = groups_[g];
    std::vector<Bucket> buckets;
    // CUDA parameters of float32 or bfloat16: moxie's multi-tensor kernel.
    std::vector<torch::Tensor> k_weights, k_grads, k_avgs, k_sqs, k_lowps;
    std::vector<int64_t> k_steps;
    for (size_t i = 0; i < group.params.size(); ++i) {
      const auto& p = group.params[i];
      const auto& grad = p.grad();
      if (!grad.defined()) continue;
      if (grad.is_sparse()) {
        throw std::invalid_argument("AdamW: sparse gradient for parameter " + std::to_string(i) +
                                    " of group '" + group.name + "' is not supported");
      }
      auto& s = state_[g][i];
      ++s.step;
      const auto& weight = s.master.defined() ? s.master : p;
      if (weight.is_cuda() && weight.scalar_type() == torch::kFloat &&
          kernels::kernel_dtype(grad) &&
          (!s.master.defined() || p.scalar_type() == torch::kBFloat16) &&
          kernels::fused_kernels_enabled()) {
        k_weights.push_back(weight);
        k_grads.push_back(grad.contiguous());
        k_avgs.push_back(s.exp_avg);
        k_sqs.push_back(s.exp_avg_sq);
        k_lowps.push_back(s.master.defined() ? p : torch::Tensor());
        // The kernel takes the host count; step_tensors_ serve the ATen path
        // only, and a parameter's path is fixed for the process (device,
        // dtype, MOXIE_FUSED_KERNELS read once).
        k_steps.push_back(s.step);
        continue;
      }
      auto& b = bucket_for(buckets, weight);
      b.weights.push_back(weight);
      // The kernel reads the grad's raw memory in the weight's dtype and
      // layout; ATen does not make it contiguous for us (a transposed grad
      // would be read in the wrong order).
      b.grads.push_back(grad.to(weight.scalar_type()).contiguous());
      b.exp_avgs.push_back(s.exp_avg);
      b.exp_avg_sqs.push_back(s.exp_avg_sq);
      b.steps.push_back(step_tensors_[g][i]);
      if (s.master.defined()) {
        b.params_lowp.push_back(p);
        b.masters.push_back(s.master);
      }
    }
    for (auto& b : buckets) {
      // The fused kernel reads state_steps but does not advance them.
      torch::_foreach_add_(b.steps, 1);
      at::_fused_adamw_(b.weights, b.grads, b.exp_avgs, b.exp_avg_sqs, /*max_exp_avg_sqs=*/{},
                        b.steps, lr * group.lr_scale, options_.beta1, options_.beta2,
                        group.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false,
                        /*grad_scale=*/std::nullopt, /*found_inf=*/std::nullopt);
      if (!b.masters.empty()) torch::_foreach_copy_(b.params_lowp, b.masters);
    }
    multi_tensor_adamw(k_weights, k_grads, k_avgs, k_sqs, k_lowps, k_steps, lr * group.lr_scale,
                       group.weight_decay, options_);
  }
  ++steps_taken_;
}

void AdamW::zero_grad() {
  for (auto& group : groups_) {
    for (auto& p : group.params) p.mutable_grad().reset();
  }
}

}  // namespace moxie
