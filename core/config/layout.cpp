// The config's parallel layout, validated against every size it splits.
#include "core/config/layout.h"

namespace moxie {

ParallelDims layout_of(const Config& c, int64_t world) {
  LayoutShape shape;
  shape.num_experts = c.moe.num_experts;
  shape.n_heads = c.model.n_heads;
  shape.n_kv_heads = c.model.n_kv_heads;
  shape.vocab_size = c.model.vocab_size;
  const bool dense_layers = c.model.first_k_dense > 0 || c.model.moe_every > 1;
  shape.ffn_hidden = dense_layers ? c.model.ffn_hidden : 0;
  if (c.moe.num_shared_experts > 0) {
    shape.shared_expert_hidden = c.moe.shared_expert_hidden > 0
                                     ? c.moe.shared_expert_hidden
                                     : c.moe.expert_hidden * c.moe.num_shared_experts;
  }
  shape.seq_len = c.data.seq_len;
  shape.capacity = c.moe.capacity_factor > 0;
  shape.capacity_group = c.moe.capacity_group;
  return ParallelDims(c.parallel, world, shape);
}

}  // namespace moxie
