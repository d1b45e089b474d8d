// Provenance of a run: which samples each step trained on, logged compactly
// (the global stream's cursor before and after the step, since the order is
// a pure function of the seed), and read back as the sources and licences
// that contributed up to a step. Torch- and protobuf-free.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "data/loader.h"

namespace moxie {

// RUN_DIR/provenance.log: a header naming the dataset, then one line per step:
//   dataset PATH manifest SHA256 seed S block B
//   step N EPOCH POSITION OFFSET EPOCH POSITION OFFSET [skipped ID ...]
// Appends when the file exists (a resumed run); a later line for the same
// step replaces an earlier one.
class ProvenanceLog {
 public:
  ProvenanceLog(const std::string& run_dir, const std::string& dataset_path,
                const LoaderState& start, uint64_t shuffle_block);
  void step(int64_t step, const LoaderState& before, const LoaderState& after,
            const std::vector<uint64_t>& skipped_ids);

 private:
  std::ofstream out_;
};

// The sources and licences of every sample trained on in steps 1..step of the
// run in run_dir: totals per licence, then each source (all of them with
// list_all, else the first 20). Throws LoaderError naming the file if the log
// is missing, damaged or shorter than `step`.
std::string provenance_report(const std::string& run_dir, int64_t step, bool list_all);

}  // namespace moxie
