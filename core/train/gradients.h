// Gradients: a model's trainable parameters grouped by how they are laid out
// over ranks (ParamLayout::sync), each group with the ranks its gradients are
// summed over and the ranks whose parts its norm adds up: replicated weights
// over dp x tp, tensor-parallel slices over dp (norm over tp), experts over
// expert-dp (norm over ep). Gradient sync (bucketed, optionally overlapped
// with backward), clipping by the global norm with each parameter counted
// once, and ZeRO-1's ownership and hand-back of updated values.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/grad_sync.h"
#include "parallel/options.h"
#include "parallel/param_layout.h"
#include "parallel/process_groups.h"
#include "parallel/zero.h"

namespace moxie {

class Gradients {
 public:
  // params[i] is laid out as layouts[i]; frozen ones (no requires_grad) are
  // left out. The groups must outlive this object.
  Gradients(const std::vector<torch::Tensor>& params, const std::vector<ParamLayout>& layouts,
            const ProcessGroups& groups, const ParallelOptions& options);

  // parallel.overlap_grad_sync on more than one rank.
  bool overlapped() const { return overlap_; }
  // Overlap: the next backward pass starts buckets as they complete.
  void arm();
  // Sums gradients over their groups (averaging over dp), clips them to
  // max_norm (0: no clipping) and returns the norm before clipping.
  double sync_and_clip(double max_norm);
  // After the first overlapped step: how many buckets started during backward.
  std::string overlap_report() const;

  // ZeRO-1 (parallel.zero1): whether this rank updates `param`, and after its
  // update the hand-back of every owner's values.
  bool owns(const torch::Tensor& param) const;
  void broadcast_updates();

 private:
  struct Group {
    SyncAxis axis;
    std::vector<torch::Tensor> params;
    Communicator* sync_group = nullptr;
    Communicator* norm_group = nullptr;  // nullptr: equal everywhere, counted once
    std::unique_ptr<GradientSync> sync;
    std::unique_ptr<Zero1Partition> zero;
  };
  std::vector<Group> groups_;  // one per SyncAxis, in the enum's order
  bool multi_rank_ = false;
  bool overlap_ = false;
};

}  // namespace moxie
