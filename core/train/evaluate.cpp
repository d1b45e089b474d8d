// Evaluation sums, reduced over the data-parallel ranks.
#include "core/train/evaluate.h"

#include <algorithm>

#include "core/train/train_step.h"

namespace moxie {
namespace {

// The loss mask restricted to documents that hold an image (slots: patch
// slots) or audio (frame slots).
torch::Tensor media_loss_mask(const Batch& b, const torch::Tensor& slots) {
  if (!b.doc.defined() || !slots.defined() || slots.numel() == 0)
    return torch::zeros_like(b.loss_mask);
  auto docs = b.doc.reshape({-1}).index_select(0, slots);
  return b.loss_mask * torch::isin(b.doc, docs).to(b.loss_mask.scalar_type());
}

// Sums over masked targets, so that the means are over the whole eval set;
// all-reduced as one tensor in this order.
struct EvalSums {
  struct Media {
    double with = 0, blanked = 0, targets = 0;
  };
  double loss = 0, targets = 0;
  Media image, audio;

  torch::Tensor pack() const {
    return torch::tensor({loss, targets, image.with, image.blanked, image.targets, audio.with,
                          audio.blanked, audio.targets},
                         torch::kDouble);
  }
  static EvalSums unpack(const torch::Tensor& t) {
    auto at = [&](int64_t i) { return t[i].item<double>(); };
    return {at(0), at(1), {at(2), at(3), at(4)}, {at(5), at(6), at(7)}};
  }
};

MediaLoss mean_of(const EvalSums::Media& m) {
  if (m.targets == 0) return {};
  return {true, m.with / m.targets, m.blanked / m.targets};
}

}  // namespace

EvalResult evaluate(CausalLM& model, const std::vector<Batch>& batches, Communicator& dp,
                    const torch::Device& device) {
  torch::NoGradGuard no_grad;
  EvalSums sums;
  for (const auto& host : batches) {
    const auto b = host.to(device);
    auto out = model->forward_inputs(model_inputs(b));
    const double n = host.loss_mask.sum().item<double>();
    sums.loss += model->cross_entropy(out.logits, b.targets, b.loss_mask).item<double>() * n;
    sums.targets += n;
    torch::Tensor blank_logits;
    for (auto [slots, media] :
         {std::pair{&host.patch_slot, &sums.image}, std::pair{&host.frame_slot, &sums.audio}}) {
      const auto mask_host = media_loss_mask(host, *slots);
      const double m = mask_host.sum().item<double>();
      if (m == 0) continue;
      const auto mask = mask_host.to(device);
      if (!blank_logits.defined())
        blank_logits = model->forward_inputs(model_inputs(b, /*blank_media=*/true)).logits;
      media->with += model->cross_entropy(out.logits, b.targets, mask).item<double>() * m;
      media->blanked += model->cross_entropy(blank_logits, b.targets, mask).item<double>() * m;
      media->targets += m;
    }
  }
  auto packed = sums.pack();
  dp.all_reduce(packed, ReduceOp::kSum);
  const auto total = EvalSums::unpack(packed);
  EvalResult r;
  r.loss = total.loss / std::max(1.0, total.targets);
  r.image = mean_of(total.image);
  r.audio = mean_of(total.audio);
  return r;
}

}  // namespace moxie
