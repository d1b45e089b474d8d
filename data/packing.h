// Packing for the dataset loader (see data/loader.h): which positions of
// which samples make up the rows of each global batch, laid out from the
// samples' lengths alone (PackingPlanner), and this rank's rows filled with
// its samples' tokens, image patches and audio frames (fill_batch).
// Internal to the loader.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "data/loader.h"
#include "data/sample_cache.h"
#include "data/sample_order.h"
#include "data/shard_set.h"

namespace moxie {

// One global batch's layout, as far as this rank is concerned.
struct BatchPlan {
  LoaderState before, after;               // the global stream around the batch
  std::vector<PackedBatch::Piece> pieces;  // in this rank's rows
};

// Walks the epochs' sample order (data/sample_order.h) and lays out global
// batches of rows_per_rank * dp_size rows of seq_len + 1 positions. Not
// thread-safe: callers serialise every call.
class PackingPlanner {
 public:
  // `advise` is told a sample about to be needed, so that it can be read
  // ahead: the first of each shuffle block a block before the walk gets
  // there. `options` and `shards` must outlive the planner.
  PackingPlanner(const LoaderOptions& options, const ShardSet& shards,
                 std::function<void(uint64_t id)> advise);

  int64_t row_len() const { return row_len_; }
  // Where the walk stands: the state before the next batch.
  const LoaderState& cursor() const { return cursor_; }
  // Continues from `state` (already checked against the dataset).
  void resume_from(const LoaderState& state) { cursor_ = state; }
  // The sample at `position` of `epoch`'s order.
  uint64_t sample_at(uint64_t epoch, uint64_t position);
  // Advises the cursor's sample and the next block's: where reading starts.
  void start_read_ahead();
  // The next global batch's layout; this rank's pieces of it.
  BatchPlan next();

 private:
  void advance();
  void read_ahead();

  const LoaderOptions& o_;
  const ShardSet& shards_;
  std::function<void(uint64_t)> advise_;
  int64_t row_len_;
  SampleOrder order_;
  LoaderState cursor_;
  uint64_t cached_epoch_ = UINT64_MAX;
  SampleOrder::Epoch epoch_key_;
};

// This rank's rows of `plan`: rows * row_len positions, padding where no
// piece lies; samples through `samples` (a damaged, skipped one leaves its
// positions padding and is listed in skipped_ids). From any thread.
PackedBatch fill_batch(const BatchPlan& plan, int64_t rows, int64_t row_len,
                       const DatasetInfo& info, SampleCache& samples);

}  // namespace moxie
