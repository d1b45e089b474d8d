// Parameter layouts from the model's specs and the layout of ranks.
#include "parallel/param_layout.h"

#include <stdexcept>

#include "parallel/zero_owners.h"

namespace moxie {

RankCoordinates coordinates_of(const ParallelDims& dims, int64_t rank) {
  RankCoordinates c;
  c.world_rank = rank;
  c.tp_index = rank % dims.tp();
  c.dp_index = rank / dims.tp();
  c.ep_index = rank % dims.ep();
  c.expert_dp_rank = rank / dims.ep();
  return c;
}

int64_t sync_group_size(const ParallelDims& dims, SyncAxis axis) {
  switch (axis) {
    case SyncAxis::kDpTp:
      return dims.dp() * dims.tp();
    case SyncAxis::kDp:
      return dims.dp();
    case SyncAxis::kExpertDp:
      return dims.expert_dp();
  }
  return 1;
}

std::vector<ParamLayout> make_param_layouts(const std::vector<ParamSpec>& specs,
                                            const std::vector<bool>& trainable,
                                            const ParallelDims& dims, const RankCoordinates& rank,
                                            bool zero1) {
  if (trainable.size() != specs.size()) {
    throw std::invalid_argument("make_param_layouts: one trainable flag per parameter is needed");
  }
  std::vector<ParamLayout> out;
  out.reserve(specs.size());
  for (const auto& s : specs) {
    ParamLayout l;
    l.name = s.name;
    l.box_shape = s.shape;
    l.global_shape = s.shape;
    l.box_start.assign(s.shape.size(), 0);
    l.tp_axis = dims.tp() > 1 ? s.tp_axis : -1;
    l.role = s.role;
    l.adapter = s.adapter;
    if (l.expert()) {
      // Experts are stacked on dim 0; EP rank i holds a contiguous block of them.
      l.box_start[0] = rank.ep_index * s.shape[0];
      l.global_shape[0] = s.shape[0] * dims.ep();
      l.sync = SyncAxis::kExpertDp;
      l.writes_box = rank.expert_dp_rank == 0;
    } else if (l.split_over_tp()) {
      const auto axis = static_cast<size_t>(l.tp_axis);
      l.box_start[axis] = rank.tp_index * s.shape[axis];
      l.global_shape[axis] = s.shape[axis] * dims.tp();
      l.sync = SyncAxis::kDp;
      l.writes_box = rank.dp_index == 0;
    } else {
      l.sync = SyncAxis::kDpTp;
      l.writes_box = rank.world_rank == 0;
    }
    out.push_back(std::move(l));
  }
  if (zero1) {
    for (const auto axis : {SyncAxis::kDpTp, SyncAxis::kDp, SyncAxis::kExpertDp}) {
      const int64_t group = sync_group_size(dims, axis);
      std::vector<size_t> members;
      std::vector<int64_t> numel;
      for (size_t i = 0; i < out.size(); ++i) {
        if (!trainable[i] || out[i].sync != axis) continue;
        members.push_back(i);
        numel.push_back(out[i].numel());
      }
      const auto owners = zero1_owners(numel, static_cast<int>(group));
      for (size_t k = 0; k < members.size(); ++k) out[members[k]].zero_owner = owners[k];
    }
  }
  return out;
}

const char* to_string(SyncAxis axis) {
  switch (axis) {
    case SyncAxis::kDpTp:
      return "replicated";
    case SyncAxis::kDp:
      return "tensor-parallel";
    case SyncAxis::kExpertDp:
      return "expert";
  }
  return "?";
}

}  // namespace moxie
