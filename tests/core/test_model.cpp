// The model: finite differences in float64, causality, rotary embeddings'
// relative-position property, RMSNorm, layer placement, HF name round trip.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/hf_interop.h"
#include "core/model/generate.h"
#include "core/model/layers.h"
#include "core/model/transformer.h"
#include "parallel/simulated_communicator.h"

using namespace moxie;

namespace {

ModelOptions tiny_model() {
  ModelOptions m;
  m.vocab_size = 11;
  m.d_model = 8;
  m.n_layers = 2;
  m.n_heads = 2;
  m.n_kv_heads = 1;
  m.ffn_hidden = 12;
  m.max_seq_len = 16;
  m.rope_theta = 100.0;
  m.first_k_dense = 1;  // layer 0 dense, layer 1 MoE: both kinds checked
  return m;
}

MoEOptions tiny_moe() {
  MoEOptions o;
  o.num_experts = 4;
  o.top_k = 2;
  o.expert_hidden = 6;
  o.aux_loss_coef = 0.1;
  o.z_loss_coef = 0.01;
  o.num_shared_experts = 1;
  return o;
}

torch::Tensor total_loss(CausalLM& model, const torch::Tensor& tokens) {
  auto inputs = tokens.narrow(1, 0, tokens.size(1) - 1);
  auto shifted = model(inputs);
  auto targets = tokens.narrow(1, 1, tokens.size(1) - 1);
  return masked_cross_entropy(shifted.logits, targets, torch::ones_like(targets)) +
         shifted.aux_loss;
}

}  // namespace

TEST_CASE("gradients match central finite differences in float64") {
  torch::manual_seed(12);
  CausalLM model(tiny_model(), tiny_moe());
  model->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.3);
  }
  auto tokens = torch::randint(0, 11, {2, 6});
  total_loss(model, tokens).backward();

  const double h = 1e-6;
  int checked = 0;
  for (auto& item : model->named_parameters()) {
    auto p = item.value();
    auto flat = p.data().view({-1});
    auto grad = p.grad().view({-1});
    for (int64_t i : {int64_t{0}, flat.size(0) / 2, flat.size(0) - 1}) {
      const double orig = flat[i].item<double>();
      double plus, minus;
      {
        torch::NoGradGuard g;
        flat[i] = orig + h;
        plus = total_loss(model, tokens).item<double>();
        flat[i] = orig - h;
        minus = total_loss(model, tokens).item<double>();
        flat[i] = orig;
      }
      const double numeric = (plus - minus) / (2 * h);
      INFO(item.key() << "[" << i << "]");
      CHECK(grad[i].item<double>() == Approx(numeric).epsilon(1e-5).margin(1e-8));
      ++checked;
    }
  }
  CHECK(checked > 40);
}

TEST_CASE("attention is causal: later tokens never change earlier logits") {
  torch::manual_seed(13);
  auto m = tiny_model();
  m.first_k_dense = 2;  // dense only: routing is per token anyway
  CausalLM model(m, tiny_moe());
  auto a = torch::randint(0, 11, {1, 8});
  auto b = a.clone();
  b[0][6] = (b[0][6].item<int64_t>() + 1) % 11;
  torch::NoGradGuard g;
  auto la = model(a).logits;
  auto lb = model(b).logits;
  CHECK(torch::allclose(la.narrow(1, 0, 6), lb.narrow(1, 0, 6)));
  CHECK(!torch::allclose(la.narrow(1, 6, 2), lb.narrow(1, 6, 2)));
}

TEST_CASE(
    "the KV cache gives the full forward's logits in any chunks, and generate agrees with and "
    "without it") {
  torch::manual_seed(17);
  auto m = tiny_model();
  m.qkv_bias = true;
  CausalLM model(m, tiny_moe());
  model->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.3);  // biases too
  }
  auto tokens = torch::randint(0, 11, {2, 12});
  torch::NoGradGuard g;
  const auto full = model(tokens).logits;
  for (const std::vector<int64_t>& chunks :
       {std::vector<int64_t>{12}, {5, 1, 1, 1, 4}, {1, 3, 8}}) {
    std::vector<KVCacheLayer> cache;
    std::vector<torch::Tensor> parts;
    int64_t at = 0;
    for (const int64_t n : chunks) {
      parts.push_back(model->forward_cached(tokens.narrow(1, at, n), cache));
      at += n;
    }
    CHECK(cache.front().length() == 12);
    CHECK(torch::allclose(torch::cat(parts, 1), full, 1e-10, 1e-10));
  }
  // Generation past max_seq_len (16): the cache up to it, then the sliding window.
  GenerateOptions o;
  o.max_new = 14;
  const std::vector<int64_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const auto with = generate(model, prompt, o);
  o.use_cache = false;
  CHECK(generate(model, prompt, o) == with);
  o.temperature = 0.9;
  o.top_p = 0.8;
  o.seed = 5;
  const auto sampled = generate(model, prompt, o);
  o.use_cache = true;
  CHECK(generate(model, prompt, o) == sampled);
}

TEST_CASE(
    "packed samples never attend to each other: each one's logits equal the sample run alone") {
  // The naive reference: every sample through the model on its own.
  torch::manual_seed(19);
  auto m = tiny_model();
  CausalLM model(m, tiny_moe());
  model->to(torch::kDouble);
  const std::vector<int64_t> lengths = {5, 7, 3};
  std::vector<torch::Tensor> samples, docs;
  for (size_t i = 0; i < lengths.size(); ++i) {
    samples.push_back(torch::randint(0, 11, {1, lengths[i]}));
    docs.push_back(torch::full({1, lengths[i]}, static_cast<int64_t>(i), torch::kLong));
  }
  ModelInputs packed;
  packed.tokens = torch::cat(samples, 1);
  packed.doc = torch::cat(docs, 1);
  torch::NoGradGuard g;
  const auto together = model->forward_inputs(packed).logits;
  int64_t at = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto alone = model(samples[i]).logits;
    CAPTURE(i);
    CHECK(torch::allclose(together.narrow(1, at, lengths[i]), alone, 1e-9, 1e-9));
    at += lengths[i];
  }
  // Without the document mask the later samples see the earlier ones.
  ModelInputs causal_only;
  causal_only.tokens = packed.tokens;
  const auto leaky = model->forward_inputs(causal_only).logits;
  CHECK_FALSE(torch::allclose(leaky.narrow(1, 5, 7), model(samples[1]).logits, 1e-6, 1e-6));
}

TEST_CASE("rotary embedding: scores depend only on the relative position") {
  RotaryEmbedding rope(8, 32, 10000.0);
  torch::manual_seed(14);
  auto q = torch::randn({1, 1, 1, 8}, torch::kDouble).expand({1, 1, 32, 8}).contiguous();
  auto k = torch::randn({1, 1, 1, 8}, torch::kDouble).expand({1, 1, 32, 8}).contiguous();
  auto rq = rope(q)[0][0];
  auto rk = rope(k)[0][0];
  // <R(m) q, R(n) k> is a function of m - n.
  const double d1 = (rq[5] * rk[2]).sum().item<double>();
  const double d2 = (rq[20] * rk[17]).sum().item<double>();
  CHECK(d1 == Approx(d2).epsilon(1e-10));
  CHECK(torch::allclose(rope(q)[0][0][0], q[0][0][0]));  // position 0 is the identity
  // Norm is preserved.
  CHECK(rq.norm(2, -1).allclose(q[0][0].norm(2, -1)));
}

TEST_CASE("RMSNorm equals the formula") {
  RMSNorm norm(4, 1e-5);
  {
    torch::NoGradGuard g;
    norm->weight.copy_(torch::tensor({1.0, 2.0, 0.5, -1.0}));
  }
  auto x = torch::tensor({{1.0, -2.0, 3.0, 0.5}});
  const double rms = std::sqrt((1 + 4 + 9 + 0.25) / 4.0 + 1e-5);
  auto expected = torch::tensor({{1.0 / rms, -4.0 / rms, 1.5 / rms, -0.5 / rms}});
  CHECK(torch::allclose(norm(x), expected.to(torch::kFloat), 1e-6, 1e-6));
}

TEST_CASE("masked cross-entropy ignores masked positions") {
  auto logits = torch::randn({1, 3, 5});
  auto targets = torch::tensor({{1, 2, 3}});
  auto mask = torch::tensor({{1.0, 0.0, 1.0}});
  auto lp = torch::log_softmax(logits, -1)[0];
  const double expected = -(lp[0][1].item<double>() + lp[2][3].item<double>()) / 2;
  CHECK(masked_cross_entropy(logits, targets, mask).item<double>() ==
        Approx(expected).epsilon(1e-6));
}

TEST_CASE("first_k_dense and moe_every place dense and MoE layers") {
  auto m = tiny_model();
  m.n_layers = 6;
  m.first_k_dense = 1;
  m.moe_every = 2;
  CausalLM model(m, tiny_moe());
  auto names = model->named_parameters();
  for (int64_t i = 0; i < 6; ++i) {
    const bool moe = i >= 1 && (i - 1) % 2 == 0;
    const std::string base = "model.layers." + std::to_string(i) + ".";
    CHECK(names.contains(base + "block_sparse_moe.experts.w13") == moe);
    CHECK(names.contains(base + "mlp.gate_proj.weight") == !moe);
  }
  CHECK(model->moe_layers().size() == 3);
}

TEST_CASE("tied embeddings share one tensor") {
  auto m = tiny_model();
  m.tie_embeddings = true;
  CausalLM model(m, tiny_moe());
  CHECK(!model->lm_head);
  CHECK(!model->named_parameters().contains("lm_head.weight"));
  // The head's gradient lands on the embedding, which gets both contributions.
  auto tokens = torch::tensor({{1, 2, 3}});
  model(tokens).logits.sum().backward();
  auto g = model->model->embed_tokens->weight.grad();
  CHECK(g[5].abs().sum().item<double>() > 0);  // token 5 is not in the input: head only
}

TEST_CASE("weights survive a save and load under Hugging Face names") {
  torch::manual_seed(15);
  auto m = tiny_model();
  m.first_k_dense = 0;
  auto o = tiny_moe();
  o.num_shared_experts = 0;
  CausalLM a(m, o), b(m, o);
  const auto path =
      (std::filesystem::temp_directory_path() / "moxie_hf_roundtrip.safetensors").string();
  save_hf_safetensors(a, path);
  load_hf_safetensors(b, path);
  auto tokens = torch::randint(0, 11, {1, 5});
  torch::NoGradGuard g;
  CHECK(torch::equal(a(tokens).logits, b(tokens).logits));
  auto hf = to_hf_state(a);
  CHECK(hf.count("model.layers.1.block_sparse_moe.experts.3.w1.weight"));
  CHECK(hf.count("model.layers.1.block_sparse_moe.experts.3.w3.weight"));
  CHECK(hf["model.layers.1.block_sparse_moe.experts.3.w2.weight"].sizes() ==
        torch::IntArrayRef({8, 6}));

  // A model of another shape refuses the file, naming the tensors at fault.
  auto wrong = m;
  wrong.d_model = 16;
  CausalLM c(wrong, o);
  CHECK_THROWS_WITH(load_hf_safetensors(c, path),
                    Catch::Contains("shape mismatch") && Catch::Contains(path));
  std::filesystem::remove(path);
}

TEST_CASE("model.init_std sets the scale of every weight matrix, experts and router included") {
  auto m = tiny_model();
  m.d_model = 64;
  m.ffn_hidden = 128;
  m.init_std = 0.5;
  auto o = tiny_moe();
  o.expert_hidden = 64;
  torch::manual_seed(21);
  CausalLM model(m, o);
  for (const auto& item : model->named_parameters()) {
    if (item.value().dim() < 2) continue;  // norms start at one
    INFO(item.key());
    // Sample standard deviation of thousands of N(0, 0.5^2) draws.
    CHECK(item.value().std().item<double>() == Approx(0.5).epsilon(0.1));
  }
}

TEST_CASE("param_specs: every parameter described, roles and TP axes as the layers hold them") {
  ModelOptions m;
  m.vocab_size = 64;
  m.d_model = 16;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.ffn_hidden = 24;
  m.first_k_dense = 1;
  m.qkv_bias = true;
  MoEOptions e;
  e.num_experts = 4;
  e.top_k = 2;
  e.expert_hidden = 8;
  e.num_shared_experts = 1;
  LoraOptions lora;
  lora.rank = 2;
  lora.targets = {"q_proj", "o_proj", "router", "experts", "gate_proj"};
  for (const int tp_size : {1, 2}) {
    SimulatedCommunicator tp(0, tp_size);
    ModelParallel parallel;
    parallel.tp.group = &tp;
    CausalLM model(m, e, parallel);
    model->add_lora(lora);
    const auto specs = model->param_specs();
    const auto params = model->named_parameters();
    REQUIRE(specs.size() == params.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto& name = params[i].key();
      const auto& s = specs[i];
      INFO(name);
      // Names as an independent account of what each parameter is.
      auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
      CHECK(s.name == name);
      CHECK(s.shape == params[i].value().sizes().vec());
      CHECK(s.adapter == has("lora_"));
      CHECK((s.role == ParamRole::kExpert) == has(".experts."));
      CHECK((s.role == ParamRole::kRouter) == has(".block_sparse_moe.gate."));
      CHECK((s.role == ParamRole::kEmbedding) == has("embed_tokens"));
      const bool column = has("q_proj") || has("k_proj") || has("v_proj") || has("gate_proj") ||
                          has("up_proj") || has("lm_head") || has("embed_tokens");
      const bool row = has("o_proj") || has("down_proj");
      int axis = -1;
      if (has("lora_A"))
        axis = row ? 1 : -1;
      else if (has("lora_B"))
        axis = column ? 0 : -1;
      else if (column)
        axis = 0;
      else if (row)
        axis = 1;
      if (s.role == ParamRole::kRouter || s.role == ParamRole::kExpert || has("shared_expert_gate"))
        axis = -1;
      CHECK(s.tp_axis == axis);
    }
  }
}
