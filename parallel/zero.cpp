// ZeRO-1 partitioning.
#include "parallel/zero.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "parallel/zero_owners.h"

namespace moxie {

std::vector<int> zero1_owners(const std::vector<torch::Tensor>& params, int group_size) {
  std::vector<int64_t> numel;
  for (const auto& p : params) numel.push_back(p.numel());
  return zero1_owners(numel, group_size);
}

Zero1Partition::Zero1Partition(std::vector<torch::Tensor> params, std::vector<int> owners,
                               Communicator& group)
    : params_(std::move(params)), owners_(std::move(owners)), group_(group) {
  if (owners_.size() != params_.size())
    throw std::invalid_argument("Zero1Partition: one owner per parameter");
  for (int o : owners_) {
    if (o < 0 || o >= group.size()) {
      throw std::invalid_argument("Zero1Partition: owner " + std::to_string(o) +
                                  " is not a rank of a group of " + std::to_string(group.size()));
    }
  }
}

std::vector<torch::Tensor> Zero1Partition::owned() const {
  std::vector<torch::Tensor> mine;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (owners_[i] == group_.rank()) mine.push_back(params_[i]);
  }
  return mine;
}

bool Zero1Partition::owns(const torch::Tensor& param) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].is_same(param)) return owners_[i] == group_.rank();
  }
  return false;
}

void Zero1Partition::broadcast_updates() {
  if (group_.size() == 1 || params_.empty()) return;
  torch::NoGradGuard no_grad;
  // One broadcast per owner: its parameters travel as one flat buffer.
  for (int owner = 0; owner < group_.size(); ++owner) {
    std::vector<torch::Tensor> mine;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (owners_[i] == owner) mine.push_back(params_[i].detach());
    }
    if (mine.empty()) continue;
    int64_t total = 0;
    for (const auto& p : mine) total += p.numel();
    torch::Tensor flat;
    if (owner == group_.rank()) {
      std::vector<torch::Tensor> pieces;
      for (const auto& p : mine) pieces.push_back(p.reshape({-1}));
      flat = torch::cat(pieces);
    } else {
      flat = torch::empty({total}, mine[0].options());
    }
    group_.broadcast(flat, owner);
    if (owner == group_.rank()) continue;
    int64_t offset = 0;
    for (auto& p : mine) {
      p.copy_(flat.narrow(0, offset, p.numel()).view(p.sizes()));
      offset += p.numel();
    }
  }
}

}  // namespace moxie
