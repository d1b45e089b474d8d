// Parity with Hugging Face transformers' MixtralForCausalLM: the same weights
// (written by transformers' save_pretrained) give the same logits, loss and
// gradients in moxie. The reference comes from tests/hf/make_reference.py;
// run through run_parity.sh, which points MOXIE_HF_REFERENCE at its output.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "core/checkpoint/hf_interop.h"
#include "core/checkpoint/safetensors.h"
#include "core/model/layers.h"

using namespace moxie;

namespace {

std::string reference_dir() {
  const char* dir = std::getenv("MOXIE_HF_REFERENCE");
  if (!dir) FAIL("MOXIE_HF_REFERENCE is not set: run this test through tests/hf/run_parity.sh");
  return dir;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("moxie's Mixtral matches Hugging Face: logits, loss and gradients") {
  const auto dir = reference_dir();
  auto hf = read_hf_config(dir + "/config.json");
  hf.moe.aux_loss_coef = 0.0;  // the reference loss is cross-entropy only
  CausalLM model(hf.model, hf.moe);
  load_hf_safetensors(model, dir + "/model.safetensors");

  safetensors::Reader ref(dir + "/reference.safetensors");
  auto ids = read_safetensor(ref, "input_ids");
  auto out = model(ids);
  const double logit_diff = max_abs_diff(out.logits, read_safetensor(ref, "logits"));
  WARN("max |logits - HF| = " << logit_diff);
  CHECK(logit_diff < 1e-4);

  const int64_t S = ids.size(1);
  auto logits = out.logits.narrow(1, 0, S - 1);
  auto targets = ids.narrow(1, 1, S - 1);
  auto loss = masked_cross_entropy(logits, targets, torch::ones_like(targets, torch::kFloat));
  const double hf_loss = read_safetensor(ref, "loss").item<double>();
  WARN("loss " << loss.item<double>() << " vs HF " << hf_loss);
  CHECK(loss.item<double>() == Approx(hf_loss).epsilon(1e-5));
  loss.backward();

  auto grads = to_hf_state(model, /*grads=*/true);
  int compared = 0;
  double worst = 0;
  for (const auto& t : ref.tensors()) {
    if (t.name.rfind("grad.", 0) != 0) continue;
    const std::string name = t.name.substr(5);
    REQUIRE(grads.count(name));
    const auto& mine = grads[name];
    auto expected = read_safetensor(ref, t.name);
    const double scale = expected.abs().max().item<double>();
    const double diff = max_abs_diff(mine, expected);
    INFO(name << ": max |grad - HF| = " << diff << " (max |grad| " << scale << ")");
    CHECK(diff <= 1e-5 + 1e-4 * scale);
    ++compared;
    worst = std::max(worst, diff / (1e-5 + 1e-4 * scale));
  }
  WARN(compared << " gradients compared; worst |diff| / (1e-5 + 1e-4 max|grad|) = " << worst);
  CHECK(compared >= 8);
}
