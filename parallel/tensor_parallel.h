// Tensor parallelism (Megatron-style, with sequence parallelism): the pieces a
// model uses to split its matrices over the tensor-parallel ranks of one
// replica. Between blocks every TP rank holds seq_len/tp positions of the
// sequence; a column-parallel layer first gathers the whole sequence
// (all_gather_along), a row-parallel layer's partial sums are reduce-scattered
// back to sequence slices (reduce_scatter_along). See parallel/differentiable.h.
#pragma once

#include <torch/torch.h>

#include "parallel/communicator.h"
#include "parallel/param_layout.h"

namespace moxie {

// The tensor-parallel group a layer is split over. No group (or a group of one)
// means an unsplit layer: the single-process path runs the same code.
struct TensorParallel {
  Communicator* group = nullptr;
  int64_t size() const { return group ? group->size() : 1; }
  int64_t rank() const { return group ? group->rank() : 0; }
  bool on() const { return size() > 1; }
};

// Appends the spec of parameter prefix + name (nothing when t is undefined).
void add_spec(std::vector<ParamSpec>& out, const std::string& prefix, const std::string& name,
              const torch::Tensor& t, int tp_axis = -1, ParamRole role = ParamRole::kDense,
              bool adapter = false);

// Fills `local` ([r, c]) with this rank's block, at (row_offset, col_offset),
// of a full [full_rows, full_cols] matrix of normal(0, std) values. The full
// matrix does not depend on the layout: it is drawn in blocks of kInitRows
// rows, block b from its own generator seeded with (one draw from the global
// generator) + b, so every layout sees the single-process values, and a rank
// never holds more than one block of rows it does not keep.
constexpr int64_t kInitRows = 128;
void init_normal_block(const torch::Tensor& local, int64_t full_rows, int64_t full_cols,
                       int64_t row_offset, int64_t col_offset, double std);

// linear_product: y = x W^T (+ b), differentiable. On the CPU a bfloat16 product is computed
// in float32 and rounded once: ATen's CPU bf16 GEMM is a scalar loop where
// the CPU lacks AVX512-BF16 (0.8 GFLOP/s against 68 in float32 on an AVX2
// machine, 2026-12-02), and it accumulates in float32 anyway. Elsewhere
// (CUDA, float32) it is torch's linear.
torch::Tensor linear_product(const torch::Tensor& x, const torch::Tensor& weight,
                             const torch::Tensor& bias = {});

// A linear layer y = x W^T (+ b) holding its TP rank's share of the full
// [out, in] weight W (parameter "weight"): column-parallel splits the outputs
// (rows of W, and the bias, parameter "bias", zero-initialised), row-parallel
// the inputs (columns; no bias, which would be added once per rank). Initialised with
// init_normal_block, never from the global generator directly, so the layout
// does not change any other layer's values. The caller communicates.
enum class Split { kColumn, kRow };
class ParallelLinearImpl : public torch::nn::Module {
 public:
  ParallelLinearImpl(int64_t in, int64_t out, Split split, const TensorParallel& tp,
                     double init_std, bool bias = false);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  torch::Tensor bias;  // undefined without one
  // Where this rank's weight lies in the full [out, in] matrix.
  int64_t split_dim() const { return split_ == Split::kColumn ? 0 : 1; }
  int64_t split_start() const { return split_start_; }

  // A low-rank adapter (LoRA): y += alpha/rank * dropout(x) A^T B^T, with
  // "lora_A" [rank, in] and "lora_B" [out, rank] split like the weight
  // (column-parallel: B's rows; row-parallel: A's columns, whose partial
  // products the caller's reduction sums like the main ones). A is drawn
  // like a weight (the same values at any layout), B starts at zero, so the
  // adapted layer starts equal to the base.
  void add_lora(int64_t rank, double alpha, double dropout);
  torch::Tensor lora_A, lora_B;  // undefined without an adapter
  // Folds the adapter into the weight and zeroes B: for export.
  void merge_lora();
  // weight (and bias) split along split_dim() under TP, and the adapter
  // factor that splits with it (lora_B of a column-parallel layer, lora_A of
  // a row-parallel one); `role` for all of them.
  void describe(const std::string& prefix, std::vector<ParamSpec>& out,
                ParamRole role = ParamRole::kDense) const;

 private:
  Split split_;
  int64_t split_start_ = 0;
  int64_t in_ = 0, out_ = 0, tp_size_ = 1;
  double lora_scale_ = 0, lora_dropout_ = 0;
};
TORCH_MODULE(ParallelLinear);

// The token embedding (parameter "weight"), its rows (the vocabulary) split
// over TP: this rank holds [vocab_start, vocab_start + vocab/tp). forward
// returns this shard's lookup, zero rows for tokens outside it; summed over
// the TP ranks it is the full lookup.
class VocabParallelEmbeddingImpl : public torch::nn::Module {
 public:
  VocabParallelEmbeddingImpl(int64_t vocab, int64_t dim, const TensorParallel& tp, double init_std);
  torch::Tensor forward(const torch::Tensor& tokens);
  int64_t vocab_start() const { return vocab_start_; }
  torch::Tensor weight;
  // "weight": an embedding, its rows split over TP.
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  int64_t vocab_start_ = 0;
  bool whole_ = true;
};
TORCH_MODULE(VocabParallelEmbedding);

// Per-position cross-entropy (natural log) over a vocabulary split over `tp`:
// logits_NV holds columns [vocab_start, vocab_start + V/tp) of the full
// logits. Returns [N] in float32 (or float64), equal on every TP rank. The
// full-vocabulary logits never exist on one rank: the max, the sum of
// exponentials and the target's logit are all-reduced. Backward is local.
torch::Tensor vocab_parallel_cross_entropy(Communicator& tp, const torch::Tensor& logits_NV,
                                           const torch::Tensor& targets_N, int64_t vocab_start);

}  // namespace moxie
