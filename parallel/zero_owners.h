// The ZeRO-1 assignment of whole parameters to the ranks of a group, from
// their sizes alone (torch-free, so `moxie plan` predicts exactly what the
// trainer's Zero1Partition does).
#pragma once

#include <cstdint>
#include <vector>

namespace moxie {

// owner[i] = group rank that owns parameter i of numel[i] elements. Largest
// first (stable on ties), each to the rank with the fewest elements so far;
// every rank computes the same assignment from the same list.
std::vector<int> zero1_owners(const std::vector<int64_t>& numel, int group_size);

}  // namespace moxie
