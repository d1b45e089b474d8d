// ParamLayout: how one parameter is laid out over the ranks, made once when
// the model is parallelised (make_param_layouts) from what the model says of
// each parameter (ParamSpec) and the layout of ranks. Gradient sync, ZeRO-1,
// clipping, checkpoints, Hugging Face interchange and the planner read it;
// nothing classifies a parameter by its name. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/parallel_dims.h"

namespace moxie {

// What a parameter is for, as far as the parallel machinery cares: experts
// are split over the EP group, routers may get their own learning rate and
// be frozen, embeddings may be exempt from weight decay.
enum class ParamRole { kDense, kEmbedding, kRouter, kExpert };

// What the layer that owns a parameter says of it (see CausalLM::param_specs).
struct ParamSpec {
  std::string name;            // as the model names it ("model.layers.0.self_attn.q_proj.weight")
  std::vector<int64_t> shape;  // this rank's tensor
  int tp_axis = -1;            // the dim split over the TP group; -1: replicated over it
  ParamRole role = ParamRole::kDense;
  bool adapter = false;  // a LoRA factor (lora_A / lora_B)
};

// Where a gradient is summed, and over which ranks the norm adds up distinct parts.
enum class SyncAxis {
  kDpTp,      // replicated weights: every dp x tp rank saw other tokens (TP: its sequence slice)
  kDp,        // TP-split weights: whole per sequence slice, summed over the replicas
  kExpertDp,  // experts: already hold every EP rank's tokens, summed over expert-data-parallel
              // ranks
};

struct ParamLayout {
  std::string name;
  std::vector<int64_t> global_shape;  // the whole tensor
  std::vector<int64_t> box_start;     // this rank's box of it: where it starts...
  std::vector<int64_t> box_shape;     // ...and its extent (the local tensor's shape)
  int tp_axis = -1;
  ParamRole role = ParamRole::kDense;
  bool adapter = false;
  SyncAxis sync = SyncAxis::kDpTp;
  // This rank writes its box to a checkpoint: one rank per distinct box.
  bool writes_box = false;
  // ZeRO-1: the rank of the sync group that keeps this parameter's optimizer
  // state and updates it; -1: every rank does (no ZeRO-1, or frozen).
  int zero_owner = -1;

  int64_t numel() const {
    int64_t n = 1;
    for (auto d : box_shape) n *= d;
    return n;
  }
  bool expert() const { return role == ParamRole::kExpert; }
  bool router() const { return role == ParamRole::kRouter; }
  bool split_over_tp() const { return tp_axis >= 0; }
};

// A rank's coordinates in the layout (pp = 1): tensor-parallel ranks are
// adjacent, then data-parallel (rank = dp_index * tp + tp_index); EP groups
// are blocks of ep adjacent ranks, expert-DP joins equal ep indices.
struct RankCoordinates {
  int64_t world_rank = 0, dp_index = 0, tp_index = 0, ep_index = 0;
  int64_t expert_dp_rank = 0;
  // This rank's index in the group a parameter of that axis syncs over.
  int64_t rank_in(SyncAxis axis) const {
    return axis == SyncAxis::kDpTp ? world_rank : axis == SyncAxis::kDp ? dp_index : expert_dp_rank;
  }
};
RankCoordinates coordinates_of(const ParallelDims& dims, int64_t rank);

// The size of the group parameters of `axis` sync over.
int64_t sync_group_size(const ParallelDims& dims, SyncAxis axis);

// Whether this rank keeps (and updates) the parameter's optimizer state.
inline bool keeps_optimizer_state(const ParamLayout& l, const RankCoordinates& rank) {
  return l.zero_owner < 0 || l.zero_owner == rank.rank_in(l.sync);
}

// The layouts of every parameter in spec order. trainable[i]: parameter i
// gets a gradient (frozen ones get no sync and no ZeRO-1 owner). With zero1,
// owners are assigned per sync group by zero1_owners (parallel/zero_owners.h)
// over its trainable parameters in this order, as Zero1Partition does.
std::vector<ParamLayout> make_param_layouts(const std::vector<ParamSpec>& specs,
                                            const std::vector<bool>& trainable,
                                            const ParallelDims& dims, const RankCoordinates& rank,
                                            bool zero1);

const char* to_string(SyncAxis axis);

}  // namespace moxie
