// Short end-to-end training runs on a corpus the test writes itself.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "core/config/config.h"
#include "core/train/trainer.h"
#include "tests/testing.h"

using namespace moxie;
namespace fs = std::filesystem;

namespace {

// Documents drawn from a small grammar: enough structure for a model to learn
// quickly, generated deterministically.
fs::path make_corpus() {
  const auto dir = testing::fresh_dir("moxie_train_corpus");
  const char* subjects[] = {"the cat", "a dog", "my friend", "the old man", "every bird"};
  const char* verbs[] = {"sees", "likes", "follows", "paints", "finds"};
  const char* objects[] = {"the red ball.", "a small house.", "the river.", "green apples.",
                           "the moon."};
  uint64_t state = 42;
  auto next = [&](uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  for (int d = 0; d < 40; ++d) {
    std::ofstream out(dir / ("doc" + std::to_string(d) + ".txt"));
    for (int s = 0; s < 30; ++s) {
      out << subjects[next(5)] << ' ' << verbs[next(5)] << ' ' << objects[next(5)] << ' ';
    }
  }
  return dir;
}

Config small_config(const fs::path& corpus, const std::string& run) {
  Config c;
  c.model.d_model = 64;
  c.model.n_layers = 2;
  c.model.n_heads = 4;
  c.model.n_kv_heads = 2;
  c.model.ffn_hidden = 128;
  c.model.max_seq_len = 64;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_hidden = 64;
  c.data.path = corpus.string();
  c.data.seq_len = 32;
  c.data.eval_fraction = 0.1;
  c.train.steps = 40;
  c.train.micro_batch_size = 8;
  c.train.eval_every = 0;
  c.train.eval_batches = 2;
  c.train.log_every = 10;
  c.train.run_dir = (fs::temp_directory_path() / run).string();
  c.schedule.warmup_steps = 5;
  c.optim.lr = 1e-2;
  c.optim.min_lr = 1e-3;
  return c;
}

// The dropped fraction of every step, from the run's metrics.jsonl.
std::vector<double> dropped_fractions(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("dropped_frac")) out.push_back(j.at("dropped_frac").get<double>());
  }
  return out;
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  return std::accumulate(v.begin() + from, v.begin() + to, 0.0) / static_cast<double>(to - from);
}

}  // namespace

TEST_CASE("a short training run learns the corpus") {
  const auto corpus = make_corpus();
  auto config = small_config(corpus, "moxie_train_run");
  std::ostringstream log;
  Trainer trainer(config, log);
  auto summary = trainer.run();
  REQUIRE(summary.train_losses.size() == 40);
  INFO(log.str());
  // Starts near ln(259) = 5.56 (uniform over the vocabulary)...
  CHECK(summary.train_losses.front() > 5.0);
  // ...and ends well below what a context-free model could reach.
  CHECK(summary.eval_losses.back().second < summary.unigram_entropy_nats - 0.3);
  CHECK(mean(summary.train_losses, 35, 40) < mean(summary.train_losses, 0, 5) - 2.0);

  // The run folder holds the resolved config (re-parseable to the same) and metrics.
  std::ifstream saved(config.train.run_dir + "/config.yaml");
  std::stringstream text;
  text << saved.rdbuf();
  CHECK(to_yaml(parse_config(text.str())) == to_yaml(config));
  std::ifstream metrics(config.train.run_dir + "/metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  CHECK(lines == 40 + 1);  // one per step, one eval
}

TEST_CASE("same seed, same losses, bit for bit") {
  const auto corpus = make_corpus();
  auto config = small_config(corpus, "moxie_train_det");
  config.train.steps = 6;
  config.train.grad_accum = 2;
  std::ostringstream log;
  auto a = Trainer(config, log).run();
  auto b = Trainer(config, log).run();
  CHECK(a.train_losses == b.train_losses);
  config.train.seed = 99;
  auto c = Trainer(config, log).run();
  CHECK(a.train_losses != c.train_losses);
}

TEST_CASE("sigmoid routing, capacity dropping, bias balancing and bf16 train") {
  const auto corpus = make_corpus();
  auto config = small_config(corpus, "moxie_train_variants");
  config.train.steps = 4;
  config.moe.score_func = ScoreFunc::kSigmoid;
  config.moe.capacity_factor = 1.0;
  config.moe.bias_update_rate = 1e-3;
  config.moe.num_shared_experts = 1;
  std::ostringstream log;
  Trainer trainer(config, log);
  auto summary = trainer.run();
  INFO(log.str());
  for (double l : summary.train_losses) CHECK(std::isfinite(l));
  // The bias moved away from zero on every MoE layer.
  for (auto& layer : trainer.model()->moe_layers()) {
    CHECK(layer->gate->bias_E.abs().sum().item<double>() > 0);
  }
  // Capacity factor 1 leaves room for exactly a balanced load, and a router
  // barely trained is never exactly balanced: every step drops assignments.
  // With top-2 of 4 experts at most half can go (all tokens on the same two
  // experts, each keeping its capacity of T*K/E = T/2).
  const auto dropped = dropped_fractions(config.train.run_dir);
  REQUIRE(dropped.size() == 4);
  for (double d : dropped) {
    CHECK(d > 0);
    CHECK(d <= 0.5);
  }

  // Dropless (capacity factor 0): nothing is ever dropped.
  auto dropless = config;
  dropless.moe.capacity_factor = 0;
  dropless.train.run_dir += "_dropless";
  Trainer(dropless, log).run();
  CHECK(dropped_fractions(dropless.train.run_dir) == std::vector<double>(4, 0.0));

  // bf16 parameters and compute, fp32 master weights: the same run, each
  // step's loss within 5e-3 (relative) of the fp32 run's. Measured on an
  // AVX2 CPU (2026-12): at most 3.5e-4 over these 4 steps (4.4e-4 dropless);
  // the runs part further later (2.9e-2 by step 10) as lr 1e-2 amplifies the
  // rounding, so the bound holds for these 4 steps only. 5e-3, about 14 times
  // the measurement and close to bf16's unit roundoff (2^-8), leaves room
  // for other CPUs' summation orders, while a bf16 path that lost updates or
  // computed in the wrong precision misses it by far (the loss falls by 1.0
  // over these steps).
  auto bf16_config = config;
  bf16_config.train.dtype = TrainDtype::kBFloat16;
  bf16_config.train.run_dir += "_bf16";
  Trainer bf16(bf16_config, log);
  const auto bf16_losses = bf16.run().train_losses;
  CHECK(bf16.model()->lm_head->weight.scalar_type() == torch::kBFloat16);
  REQUIRE(bf16_losses.size() == summary.train_losses.size());
  for (size_t i = 0; i < bf16_losses.size(); ++i) {
    INFO("step " << i + 1 << ": fp32 " << summary.train_losses[i] << ", bf16 " << bf16_losses[i]);
    CHECK(std::abs(bf16_losses[i] - summary.train_losses[i]) <=
          5e-3 * std::abs(summary.train_losses[i]));
  }
  CHECK(summary.train_losses.back() < summary.train_losses.front() - 0.5);  // the runs did learn
}
