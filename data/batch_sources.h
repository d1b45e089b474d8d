// make_batch_sources: the factory that turns data options into this rank's
// training stream and its held-out batches, whichever source the config
// names (a folder of text, or a dataset built by `moxie data build`). The
// trainer sees only BatchSource.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/options.h"

namespace moxie {

// What a source needs beyond DataOptions: the run's seed and batch, and this
// rank's data-parallel slice.
struct SourceSetup {
  uint64_t seed = 0;
  int64_t micro_batch_size = 1;  // rows per micro-batch on this rank
  int64_t eval_batches = 0;
  int64_t dp_rank = 0, dp_size = 1;
  std::string provenance_run_dir;  // dataset: log each step's samples there ("": rank != 0)
};

struct BatchSources {
  std::unique_ptr<BatchSource> train;
  std::vector<Batch> eval;          // this rank's rows of the held-out batches (may be empty)
  double unigram_entropy_nats = 0;  // text source: the corpus' best context-free loss
  std::vector<std::string> log;     // what was read, for the run's log
};

// Throws (naming the path and the fix) when the data cannot be read.
BatchSources make_batch_sources(const DataOptions& data, const SourceSetup& setup);

}  // namespace moxie
