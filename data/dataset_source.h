// The trainer's side of the dataset loader: packed rows as torch batches
// (inputs, next-token targets, a loss mask over text targets within a
// document, document ids for the attention mask, media for the encoders).
#pragma once

#include <torch/torch.h>

#include <memory>

#include "data/batch.h"
#include "data/loader.h"

namespace moxie {

// A packed batch as tensors: row positions [0, S) are the inputs and
// [1, S] the targets; a target counts when it is a token of the same document
// as its input (so never a pad, a patch, a frame, or the next document's BOS).
Batch to_batch(const PackedBatch& packed);

class DatasetSource : public BatchSource {
 public:
  DatasetSource(LoaderOptions options, const LoaderState* resume = nullptr)
      : loader_(std::move(options), resume) {}
  Batch next() override;
  DatasetLoader& loader() { return loader_; }
  // The last batch's place in the stream and its damaged samples.
  const PackedBatch& last() const { return last_; }

 private:
  DatasetLoader loader_;
  PackedBatch last_;  // without its bulk (tokens, media)
};

}  // namespace moxie
