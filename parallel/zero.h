// ZeRO-1 partitioning: which rank of a group owns (updates, and keeps the
// optimizer state of) each parameter, and the hand-back of updated values.
//
// Parameters are assigned whole, largest first, each to the rank with the
// fewest elements so far: shares balance within one parameter's size, and
// every rank computes the same assignment from the same list.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "parallel/communicator.h"

namespace moxie {

// owner[i] = rank of the group that owns params[i] (by numel).
std::vector<int> zero1_owners(const std::vector<torch::Tensor>& params, int group_size);

class Zero1Partition {
 public:
  // owners[i]: the group rank that owns params[i], as make_param_layouts
  // assigned it (ParamLayout::zero_owner). group must outlive this object.
  Zero1Partition(std::vector<torch::Tensor> params, std::vector<int> owners, Communicator& group);
  // The parameters this rank updates.
  std::vector<torch::Tensor> owned() const;
  bool owns(const torch::Tensor& param) const;
  // After this rank's optimizer step: every parameter takes its owner's value
  // (one broadcast per owner; parameters of one model share a dtype).
  void broadcast_updates();

 private:
  std::vector<torch::Tensor> params_;
  std::vector<int> owners_;
  Communicator& group_;
};

}  // namespace moxie
