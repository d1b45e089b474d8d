// ZeRO-1 assignment by size.
#include "parallel/zero_owners.h"

#include <algorithm>
#include <numeric>

namespace moxie {

std::vector<int> zero1_owners(const std::vector<int64_t>& numel, int group_size) {
  std::vector<size_t> order(numel.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return numel[a] > numel[b]; });
  std::vector<int64_t> load(group_size, 0);
  std::vector<int> owners(numel.size(), 0);
  for (size_t i : order) {
    const int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owners[i] = r;
    load[r] += numel[i];
  }
  return owners;
}

}  // namespace moxie
