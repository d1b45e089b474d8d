// ParallelDims: the layout of ranks, validated once, up front.
//
// Axes: world = pp * dp * tp. Expert parallelism folds over the non-pipeline
// ranks: ep divides dp * tp, each EP group holds every expert once, and expert
// weights are replicated over the dp * tp / ep expert-data-parallel ranks.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "parallel/options.h"

namespace moxie {

class LayoutError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The sizes of a model that the layout splits. Zero means "not present" and
// is not checked (e.g. no dense FFN layers, no shared experts).
struct LayoutShape {
  int64_t num_experts = 1;
  int64_t n_heads = 1, n_kv_heads = 1;  // attention heads split over tp
  int64_t vocab_size = 0;               // vocabulary split over tp
  int64_t ffn_hidden = 0;               // dense SwiGLU width split over tp
  int64_t shared_expert_hidden = 0;     // shared-expert SwiGLU width split over tp
  int64_t seq_len = 0;                  // sequence split over tp between blocks
  // With a capacity factor: tokens per capacity group (0: one sequence), which
  // must not straddle two sequence-parallel ranks.
  bool capacity = false;
  int64_t capacity_group = 0;
};

class ParallelDims {
 public:
  // One rank, no parallelism.
  ParallelDims() : ParallelDims(ParallelOptions{}, 1, LayoutShape{}) {}
  // Throws LayoutError with one sentence naming what is wrong and how to fix it.
  ParallelDims(const ParallelOptions& options, int64_t world_size, const LayoutShape& shape);
  ParallelDims(const ParallelOptions& options, int64_t world_size, int64_t num_experts,
               int64_t n_heads, int64_t n_kv_heads);

  int64_t world() const { return world_; }
  int64_t dp() const { return options_.dp; }
  int64_t tp() const { return options_.tp; }
  int64_t ep() const { return options_.ep; }
  int64_t pp() const { return options_.pp; }
  int64_t expert_dp() const { return options_.dp * options_.tp / options_.ep; }
  std::string describe() const;  // e.g. "world 8 = pp1 x dp2 x tp2, ep2 (expert-dp 2)"

 private:
  ParallelOptions options_;
  int64_t world_;
};

}  // namespace moxie
