// The order in which a dataset's samples are trained on: a pure function of
// (seed, epoch, global position), never of the number of ranks.
//
// Samples are grouped in blocks of `block` consecutive indices (neighbours in
// a shard); each epoch visits the blocks in a seeded random order and the
// samples of a block in a seeded random order, so reads stay within one
// region of one shard at a time while every epoch is a different permutation.
// Data-parallel replicas take disjoint, contiguous slices of each global
// batch; the TP and EP ranks of one replica take the same slice.
#pragma once

#include <cstdint>
#include <vector>

namespace moxie {

class SampleOrder {
 public:
  // num_samples > 0, block > 0.
  SampleOrder(uint64_t num_samples, uint64_t seed, uint64_t block = 256);

  uint64_t num_samples() const { return n_; }
  // One epoch's shuffle, computed once (O(num_samples / block)) and reused.
  struct Epoch {
    uint64_t key = 0, short_slot = 0;  // where the last, possibly short, block lands
  };
  Epoch epoch(uint64_t e) const;
  // The sample at `position` of an epoch (position in [0, num_samples)). Every
  // epoch is a permutation of [0, num_samples). Thread-safe (const).
  uint64_t sample_at(const Epoch& epoch, uint64_t position) const;
  uint64_t sample_at(uint64_t e, uint64_t position) const { return sample_at(epoch(e), position); }

 private:
  uint64_t n_, seed_, block_, blocks_;
};

// Where a rank's samples lie in the global stream: positions
// [step * global_batch + dp_rank * per_rank, ... + per_rank), wrapping into
// the next epoch. Returns (epoch, position) pairs in order.
struct StreamPosition {
  uint64_t epoch = 0, position = 0;
};
std::vector<StreamPosition> rank_positions(uint64_t num_samples, uint64_t step,
                                           uint64_t global_batch, uint64_t dp_rank, uint64_t dp);

}  // namespace moxie
