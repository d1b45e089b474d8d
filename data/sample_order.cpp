// Seeded block shuffling by keyed bijections (no table of N entries is kept).
#include "data/sample_order.h"

#include <stdexcept>
#include <string>

namespace moxie {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A keyed permutation of [0, n): a 4-round Feistel network on the smallest
// power-of-four domain that holds n, with cycle walking back into [0, n).
uint64_t permute(uint64_t i, uint64_t n, uint64_t key) {
  if (n <= 1) return 0;
  int half_bits = 1;
  while ((uint64_t{1} << (2 * half_bits)) < n) ++half_bits;
  const uint64_t mask = (uint64_t{1} << half_bits) - 1;
  uint64_t x = i;
  do {
    uint64_t left = x >> half_bits, right = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t f = mix(right ^ mix(key + round)) & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits) | right;
  } while (x >= n);
  return x;
}

}  // namespace

SampleOrder::SampleOrder(uint64_t num_samples, uint64_t seed, uint64_t block)
    : n_(num_samples), seed_(seed), block_(block) {
  if (n_ == 0) throw std::invalid_argument("SampleOrder: the dataset has no samples");
  if (block_ == 0) throw std::invalid_argument("SampleOrder: block must be at least 1");
  blocks_ = (n_ + block_ - 1) / block_;
}

SampleOrder::Epoch SampleOrder::epoch(uint64_t e) const {
  Epoch out;
  out.key = mix(seed_ ^ mix(e));
  while (permute(out.short_slot, blocks_, out.key) != blocks_ - 1) ++out.short_slot;
  return out;
}

uint64_t SampleOrder::sample_at(const Epoch& epoch, uint64_t position) const {
  if (position >= n_) {
    throw std::out_of_range("position " + std::to_string(position) + " is past the " +
                            std::to_string(n_) + " samples of an epoch");
  }
  const uint64_t key = epoch.key, short_slot = epoch.short_slot;
  // Positions fill the shuffled block slots in order; the last block of the
  // dataset may be short, and every slot before it is full.
  const uint64_t last = blocks_ - 1, last_size = n_ - last * block_;
  uint64_t slot, within;
  if (position < short_slot * block_) {
    slot = position / block_;
    within = position % block_;
  } else if (position < short_slot * block_ + last_size) {
    slot = short_slot;
    within = position - short_slot * block_;
  } else {
    const uint64_t rest = position - short_slot * block_ - last_size;
    slot = short_slot + 1 + rest / block_;
    within = rest % block_;
  }
  const uint64_t b = permute(slot, blocks_, key);
  const uint64_t size = b == last ? last_size : block_;
  return b * block_ + permute(within, size, mix(key ^ (b + 1)));
}

std::vector<StreamPosition> rank_positions(uint64_t num_samples, uint64_t step,
                                           uint64_t global_batch, uint64_t dp_rank, uint64_t dp) {
  if (dp == 0 || global_batch % dp != 0) {
    throw std::invalid_argument("the global batch of " + std::to_string(global_batch) +
                                " samples does not split over " + std::to_string(dp) +
                                " data-parallel ranks");
  }
  const uint64_t per_rank = global_batch / dp;
  std::vector<StreamPosition> out;
  out.reserve(per_rank);
  const uint64_t first = step * global_batch + dp_rank * per_rank;
  for (uint64_t k = 0; k < per_rank; ++k) {
    const uint64_t g = first + k;
    out.push_back({g / num_samples, g % num_samples});
  }
  return out;
}

}  // namespace moxie
