// Evaluation on held-out batches: the mean loss over every counted target of
// the eval set, and for datasets with media the loss on the text of samples
// that hold an image (audio), with the media present and blanked.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "core/model/transformer.h"
#include "data/batch.h"
#include "parallel/communicator.h"

namespace moxie {

struct MediaLoss {
  bool present = false;  // some eval sample holds this medium
  double with = 0;       // nats/token on the text of those samples
  double blanked = 0;    // the same with the medium's inputs zeroed
};

struct EvalResult {
  double loss = 0;
  MediaLoss image, audio;
};

// batches: this rank's rows of the eval set (host tensors); dp: the ranks
// holding the other rows. Collective over dp. No gradients.
EvalResult evaluate(CausalLM& model, const std::vector<Batch>& batches, Communicator& dp,
                    const torch::Device& device);

}  // namespace moxie
