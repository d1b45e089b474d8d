// Tensor-parallel layers and the vocabulary-parallel cross-entropy.
#include "parallel/tensor_parallel.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

namespace moxie {

void init_normal_block(const torch::Tensor& local, int64_t full_rows, int64_t full_cols,
                       int64_t row_offset, int64_t col_offset, double std) {
  TORCH_CHECK(local.dim() == 2 && row_offset + local.size(0) <= full_rows &&
                  col_offset + local.size(1) <= full_cols,
              "init_normal_block: block ", local.sizes(), " at (", row_offset, ", ", col_offset,
              ") is outside [", full_rows, ", ", full_cols, "]");
  torch::NoGradGuard no_grad;
  // Every rank draws the seed, so the global generator stays in step.
  const auto seed = torch::randint(0, int64_t{1} << 40, {1}, torch::kLong).item<int64_t>();
  const int64_t first = row_offset, last = row_offset + local.size(0);  // [first, last)
  for (int64_t b = first / kInitRows; b * kInitRows < last; ++b) {
    const int64_t b0 = b * kInitRows, b1 = std::min(full_rows, b0 + kInitRows);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed + b));
    auto block = torch::empty({b1 - b0, full_cols}, torch::kFloat).normal_(0.0, std, gen);
    const int64_t r0 = std::max(first, b0), r1 = std::min(last, b1);
    local.narrow(0, r0 - first, r1 - r0)
        .copy_(block.narrow(0, r0 - b0, r1 - r0).narrow(1, col_offset, local.size(1)));
  }
}

ParallelLinearImpl::ParallelLinearImpl(int64_t in, int64_t out, Split split,
                                       const TensorParallel& tp, double init_std, bool bias)
    : split_(split), in_(in), out_(out), tp_size_(tp.size()) {
  TORCH_CHECK(!bias || split == Split::kColumn,
              "ParallelLinear: only a column-parallel layer has a bias");
  const int64_t n = tp.size(), r = tp.rank();
  const int64_t local_in = split == Split::kRow ? in / n : in;
  const int64_t local_out = split == Split::kColumn ? out / n : out;
  split_start_ = r * (split == Split::kColumn ? local_out : local_in);
  TORCH_CHECK(local_in * (split == Split::kRow ? n : 1) == in &&
                  local_out * (split == Split::kColumn ? n : 1) == out,
              "ParallelLinear: [", out, ", ", in, "] does not split evenly over ", n, " ranks");
  weight = register_parameter("weight", torch::empty({local_out, local_in}));
  init_normal_block(weight, out, in, split == Split::kColumn ? r * local_out : 0,
                    split == Split::kRow ? r * local_in : 0, init_std);
  if (bias) this->bias = register_parameter("bias", torch::zeros({local_out}));
}

torch::Tensor linear_product(const torch::Tensor& x, const torch::Tensor& weight,
                             const torch::Tensor& bias) {
  if (x.is_cpu() && x.scalar_type() == torch::kBFloat16) {
    const auto f = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat) : t; };
    return torch::nn::functional::linear(f(x), f(weight), f(bias)).to(torch::kBFloat16);
  }
  return torch::nn::functional::linear(x, weight, bias);
}

torch::Tensor ParallelLinearImpl::forward(const torch::Tensor& x) {
  auto y = linear_product(x, weight, bias);
  if (!lora_A.defined()) return y;
  auto h = lora_dropout_ > 0 ? torch::dropout(x, lora_dropout_, is_training()) : x;
  return y + linear_product(linear_product(h, lora_A), lora_B) * lora_scale_;
}

void ParallelLinearImpl::add_lora(int64_t rank, double alpha, double dropout) {
  TORCH_CHECK(rank > 0 && !lora_A.defined(), "ParallelLinear::add_lora: rank ", rank,
              ", adapter already there: ", lora_A.defined());
  const bool column = split_ == Split::kColumn;
  const int64_t local_in = weight.size(1), local_out = weight.size(0);
  lora_A = register_parameter("lora_A", torch::empty({rank, local_in}, weight.options()));
  lora_B = register_parameter("lora_B", torch::zeros({local_out, rank}, weight.options()));
  auto a = torch::empty({rank, local_in}, torch::kFloat);
  init_normal_block(a, rank, in_, 0, column ? 0 : split_start_,
                    1.0 / std::sqrt(static_cast<double>(in_)));
  torch::NoGradGuard no_grad;
  lora_A.copy_(a);
  lora_scale_ = alpha / static_cast<double>(rank);
  lora_dropout_ = dropout;
}

void ParallelLinearImpl::merge_lora() {
  if (!lora_A.defined()) return;
  torch::NoGradGuard no_grad;
  weight.add_(torch::mm(lora_B.to(torch::kDouble), lora_A.to(torch::kDouble))
                  .mul(lora_scale_)
                  .to(weight.scalar_type()));
  lora_B.zero_();  // the adapter now adds nothing
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(int64_t vocab, int64_t dim,
                                                       const TensorParallel& tp, double init_std) {
  const int64_t rows = vocab / tp.size();
  TORCH_CHECK(rows * tp.size() == vocab, "VocabParallelEmbedding: vocabulary ", vocab,
              " does not split evenly over ", tp.size(), " ranks");
  vocab_start_ = tp.rank() * rows;
  whole_ = rows == vocab;
  weight = register_parameter("weight", torch::empty({rows, dim}));
  init_normal_block(weight, vocab, dim, vocab_start_, 0, init_std);
}

torch::Tensor VocabParallelEmbeddingImpl::forward(const torch::Tensor& tokens) {
  if (whole_) return torch::embedding(weight, tokens);
  const int64_t rows = weight.size(0);
  auto local = tokens - vocab_start_;
  auto inside = (local >= 0).logical_and(local < rows);
  auto emb = torch::embedding(weight, local.clamp(0, rows - 1));
  return emb * inside.unsqueeze(-1).to(emb.scalar_type());
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct VocabParallelCrossEntropyFn : public torch::autograd::Function<VocabParallelCrossEntropyFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor logits_NV,
                               torch::Tensor targets_N, Communicator* tp, int64_t vocab_start) {
    const auto dtype = logits_NV.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    auto logits = logits_NV.to(dtype);
    const int64_t rows = logits.size(1);
    auto max_N = std::get<0>(logits.max(1));
    tp->all_reduce(max_N, ReduceOp::kMax);
    auto exp_NV = (logits - max_N.unsqueeze(1)).exp_();
    auto sum_N = exp_NV.sum(1);
    auto local = targets_N - vocab_start;
    auto inside = (local >= 0).logical_and(local < rows);
    auto idx = local.clamp(0, rows - 1).unsqueeze(1);
    auto target_logit_N = logits.gather(1, idx).squeeze(1) * inside.to(dtype);
    // One all-reduce for both sums.
    auto sums = torch::stack({sum_N, target_logit_N});
    tp->all_reduce(sums, ReduceOp::kSum);
    sum_N = sums[0];
    auto loss_N = sum_N.log() + max_N - sums[1];
    exp_NV.div_(sum_N.unsqueeze(1));  // softmax of this shard's columns
    ctx->save_for_backward({exp_NV, idx, inside});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits_NV.scalar_type());
    return loss_N;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto grad_NV = saved[0].clone();
    grad_NV.scatter_add_(1, saved[1], -saved[2].to(grad_NV.scalar_type()).unsqueeze(1));
    grad_NV.mul_(grads[0].unsqueeze(1));
    const auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad_NV.to(dtype), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor vocab_parallel_cross_entropy(Communicator& tp, const torch::Tensor& logits_NV,
                                           const torch::Tensor& targets_N, int64_t vocab_start) {
  return VocabParallelCrossEntropyFn::apply(logits_NV, targets_N, &tp, vocab_start);
}

void add_spec(std::vector<ParamSpec>& out, const std::string& prefix, const std::string& name,
              const torch::Tensor& t, int tp_axis, ParamRole role, bool adapter) {
  if (!t.defined()) return;
  out.push_back({prefix + name, t.sizes().vec(), tp_axis, role, adapter});
}

void ParallelLinearImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out,
                                  ParamRole role) const {
  const int axis = static_cast<int>(split_dim());
  add_spec(out, prefix, "weight", weight, axis, role);
  add_spec(out, prefix, "bias", bias, 0, role);
  const bool column = split_ == Split::kColumn;
  add_spec(out, prefix, "lora_A", lora_A, column ? -1 : 1, role, /*adapter=*/true);
  add_spec(out, prefix, "lora_B", lora_B, column ? 0 : -1, role, /*adapter=*/true);
}

void VocabParallelEmbeddingImpl::describe(const std::string& prefix,
                                          std::vector<ParamSpec>& out) const {
  add_spec(out, prefix, "weight", weight, 0, ParamRole::kEmbedding);
}

}  // namespace moxie
