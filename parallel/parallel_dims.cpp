// ParallelDims validation.
#include "parallel/parallel_dims.h"

#include <utility>

namespace moxie {
namespace {
std::string str(int64_t v) { return std::to_string(v); }
}  // namespace

ParallelDims::ParallelDims(const ParallelOptions& o, int64_t world_size, int64_t num_experts,
                           int64_t n_heads, int64_t n_kv_heads)
    : ParallelDims(o, world_size, [&] {
        LayoutShape s;
        s.num_experts = num_experts;
        s.n_heads = n_heads;
        s.n_kv_heads = n_kv_heads;
        return s;
      }()) {}

ParallelDims::ParallelDims(const ParallelOptions& o, int64_t world_size, const LayoutShape& shape)
    : options_(o), world_(world_size) {
  const int64_t num_experts = shape.num_experts, n_heads = shape.n_heads,
                n_kv_heads = shape.n_kv_heads;
  if (o.dp < 1 || o.tp < 1 || o.ep < 1 || o.pp < 1) {
    throw LayoutError("parallel.dp, tp, ep and pp must each be at least 1");
  }
  if (o.pp != 1) {
    throw LayoutError("parallel.pp=" + str(o.pp) +
                      ": pipeline parallelism is not implemented; set parallel.pp=1");
  }
  if (o.pp * o.dp * o.tp != world_size) {
    throw LayoutError("parallel layout pp*dp*tp=" + str(o.pp * o.dp * o.tp) +
                      " does not match the world size " + str(world_size) + "; launch " +
                      str(o.pp * o.dp * o.tp) + " ranks or change parallel.dp/tp");
  }
  if ((o.dp * o.tp) % o.ep != 0) {
    throw LayoutError("parallel.ep=" + str(o.ep) + " does not divide dp*tp=" + str(o.dp * o.tp));
  }
  if (num_experts % o.ep != 0) {
    throw LayoutError("moe.num_experts=" + str(num_experts) +
                      " is not divisible by parallel.ep=" + str(o.ep));
  }
  if (n_heads % o.tp != 0 || n_kv_heads % o.tp != 0) {
    throw LayoutError("model.n_heads=" + str(n_heads) + " and model.n_kv_heads=" + str(n_kv_heads) +
                      " must both be divisible by parallel.tp=" + str(o.tp));
  }
  if (o.tp == 1) return;
  for (auto [key, v] : {std::pair{"model.vocab_size", shape.vocab_size},
                        {"model.ffn_hidden", shape.ffn_hidden},
                        {"moe.shared_expert_hidden", shape.shared_expert_hidden},
                        {"data.seq_len", shape.seq_len}}) {
    if (v % o.tp != 0) {
      throw LayoutError(std::string(key) + "=" + str(v) + " is not divisible by parallel.tp=" +
                        str(o.tp) + ", which splits it; pick a multiple of " + str(o.tp));
    }
  }
  if (shape.capacity && shape.seq_len > 0) {
    const int64_t slice = shape.seq_len / o.tp;
    if (shape.capacity_group == 0 || slice % shape.capacity_group != 0) {
      throw LayoutError("moe.capacity_group=" + str(shape.capacity_group) +
                        (shape.capacity_group == 0 ? " (one whole sequence)" : "") +
                        " must divide the sequence slice data.seq_len/tp=" + str(slice) +
                        " that each tensor-parallel rank routes; set moe.capacity_group to a "
                        "divisor of " +
                        str(slice) +
                        " (the same value keeps the single-process "
                        "run identical)");
    }
  }
}

std::string ParallelDims::describe() const {
  return "world " + str(world_) + " = pp" + str(pp()) + " x dp" + str(dp()) + " x tp" + str(tp()) +
         ", ep" + str(ep()) + " (expert-dp " + str(expert_dp()) + ")";
}

}  // namespace moxie
