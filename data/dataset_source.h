// The trainer's side of the dataset loader: packed rows as torch batches
// (inputs, next-token targets, a loss mask over text targets within a
// document, document ids for the attention mask, media for the encoders).
#pragma once

#include <torch/torch.h>

#include <memory>

#include "data/batch.h"
#include "data/loader.h"
#include "data/provenance.h"

namespace moxie {

// A packed batch as tensors: row positions [0, S) are the inputs and
// [1, S] the targets; a target counts when it is a token of the same document
// as its input (so never a pad, a patch, a frame, or the next document's BOS).
Batch to_batch(const PackedBatch& packed);

// provenance_run_dir: where each step's samples came from is logged to that
// run folder's provenance log (rank 0's source; "": not logged).
class DatasetSource : public BatchSource {
 public:
  explicit DatasetSource(LoaderOptions options, const std::string& provenance_run_dir = "");
  Batch next() override;
  std::string state() const override { return loader_->state().to_string(); }
  // A new loader at that place (LoaderState::to_string's text).
  void restore(const std::string& state) override;
  void step_done(int64_t step) override;
  uint64_t skipped() const override { return loader_->skipped(); }
  DatasetLoader& loader() { return *loader_; }
  // The last batch's place in the stream and its damaged samples.
  const PackedBatch& last() const { return last_; }

 private:
  LoaderOptions options_;
  std::unique_ptr<DatasetLoader> loader_;
  std::unique_ptr<ProvenanceLog> provenance_;
  PackedBatch last_;  // without its bulk (tokens, media)
  // The step in progress: the stream before its first batch, its damaged samples.
  bool step_open_ = false;
  LoaderState step_before_;
  std::vector<uint64_t> step_skipped_;
};

}  // namespace moxie
