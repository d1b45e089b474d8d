// Config: defaults, round trip, overrides, and one clear error per kind of mistake.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/config/config.h"
#include "tests/testing.h"

using namespace moxie;
using Catch::Contains;

TEST_CASE("an empty config gives the structs' defaults") {
  auto c = parse_config("");
  CHECK(c.model.d_model == ModelOptions{}.d_model);
  CHECK(c.moe.score_func == ScoreFunc::kSoftmax);
  CHECK(c.data.extensions == std::vector<std::string>{".txt"});
}

TEST_CASE("values are read, and to_yaml reads back to the same config") {
  auto c = parse_config(R"(
model: {d_model: 96, n_heads: 6, n_kv_heads: 3, tie_embeddings: true, rope_theta: 500000}
moe: {num_experts: 16, top_k: 4, score_func: sigmoid, capacity_factor: 1.25, drop_policy: position}
optim: {lr: 0.0003, min_lr: 3.0e-5}
schedule: {decay: linear}
data: {extensions: [.txt, .md], seq_len: 64}
train: {steps: 7, run_dir: runs/x, dtype: bfloat16}
)");
  CHECK(c.model.d_model == 96);
  CHECK(c.model.tie_embeddings);
  CHECK(c.model.rope_theta == 500000.0);
  CHECK(c.moe.capacity_factor == 1.25);
  CHECK(c.optim.lr == 0.0003);
  CHECK(c.optim.min_lr == 3.0e-5);
  CHECK(c.data.extensions == std::vector<std::string>{".txt", ".md"});
  CHECK(c.train.dtype == TrainDtype::kBFloat16);
  const auto text = to_yaml(c);
  const auto again = parse_config(text);
  CHECK(to_yaml(again) == text);
  CHECK(again.optim.lr == c.optim.lr);  // doubles survive exactly
  CHECK(again.moe.capacity_factor == c.moe.capacity_factor);
  CHECK(text.find("rope_theta: 500000.0") != std::string::npos);
  CHECK(text.find("min_lr: 3.0e-05") != std::string::npos);  // a float to YAML 1.1 readers too
}

namespace {

// Every key of every section, each set away from its default. Written out by
// hand from the option headers: the independent list that to_yaml must match.
const char* const kFullYaml = R"(model:
  vocab_size: 300
  d_model: 96
  n_layers: 6
  n_heads: 6
  n_kv_heads: 3
  head_dim: 32
  ffn_hidden: 384
  max_seq_len: 512
  rope_theta: 10000.0
  norm_eps: 1.0e-06
  init_std: 0.01
  tie_embeddings: true
  qkv_bias: true
  first_k_dense: 1
  moe_every: 2
moe:
  num_experts: 16
  top_k: 4
  expert_hidden: 128
  score_func: sigmoid
  renormalize: false
  aux_loss_coef: 0.001
  z_loss_coef: 0.0001
  bias_update_rate: 0.001
  capacity_factor: 1.25
  drop_policy: position
  capacity_group: 16
  num_shared_experts: 1
  shared_expert_hidden: 64
optim:
  lr: 0.001
  min_lr: 1.0e-05
  beta1: 0.8
  beta2: 0.99
  eps: 1.0e-10
  weight_decay: 0.05
  grad_clip: 0.5
  decay_embeddings: true
schedule:
  warmup_steps: 10
  decay: linear
  decay_steps: 90
data:
  source: text
  path: corpus/dir
  extensions: [.md, .rst]
  tokenizer: byte
  eval_fraction: 0.1
  seq_len: 64
  eval_path: corpus/held-out
  shuffle_block: 128
  prefetch_threads: 3
  prefetch_mb: 64
  on_corrupt: fail
  max_skipped: 7
  verify_shards: false
train:
  steps: 100
  micro_batch_size: 4
  grad_accum: 2
  eval_every: 0
  eval_batches: 2
  log_every: 5
  seed: 7
  run_dir: runs/full
  device: cpu
  dtype: bfloat16
  threads: 2
  checkpoint_every: 50
  keep_checkpoints: 2
  stop_at: 60
  resume: none
  max_nonfinite_steps: 2
parallel:
  dp: 2
  tp: 2
  ep: 4
  pp: 1
  zero1: true
  overlap_grad_sync: true
  collective_timeout_s: 120.0
finetune:
  base: runs/pre/checkpoints/step-00000100
  freeze: [router, embed_tokens]
  router_lr: 0.1
  early_stop_patience: 0
lora:
  rank: 8
  alpha: 32.0
  dropout: 0.05
  targets: [q_proj, v_proj, experts]
)";

// "  key: value" lines -> "section.key", in order.
std::vector<std::string> key_paths(const std::string& yaml) {
  std::vector<std::string> paths;
  std::istringstream in(yaml);
  std::string line, section;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (line[0] != ' ')
      section = line.substr(0, colon);
    else
      paths.push_back(section + "." + line.substr(2, colon - 2));
  }
  return paths;
}

}  // namespace

TEST_CASE("to_yaml writes every key in order, and a full config round-trips") {
  const auto full = parse_config(kFullYaml);
  CHECK(full != Config{});
  CHECK(full.model.head_dim == 32);
  CHECK(full.model.norm_eps == 1e-6);
  CHECK_FALSE(full.moe.renormalize);
  CHECK(full.moe.shared_expert_hidden == 64);
  CHECK(full.optim.eps == 1e-10);
  CHECK(full.optim.decay_embeddings);
  CHECK(full.schedule.decay_steps == 90);
  CHECK(full.data.path == "corpus/dir");
  CHECK(full.data.extensions == std::vector<std::string>{".md", ".rst"});
  CHECK(full.train.seed == 7);
  CHECK(full.train.threads == 2);
  CHECK(full.parallel.ep == 4);
  CHECK(full.parallel.zero1);
  CHECK(full.parallel.collective_timeout_s == 120);

  CHECK(to_yaml(full) == kFullYaml);  // every key, stable order, exact values
  CHECK(parse_config(to_yaml(full)) == full);
  CHECK(key_paths(to_yaml(Config{})) == key_paths(kFullYaml));  // defaults too: no key left out
  CHECK(parse_config(to_yaml(Config{})) == Config{});
}

TEST_CASE("strings that YAML would read as other types are quoted and read back") {
  Config c;
  c.train.run_dir = "true";
  c.data.path = "123";
  c.data.extensions = {"no", "null", "1e3", ".txt"};
  const auto text = to_yaml(c);
  CHECK_THAT(text, Contains("run_dir: \"true\"") && Contains("path: \"123\"") &&
                       Contains("[\"no\", \"null\", \"1e3\", .txt]"));
  CHECK(parse_config(text) == c);
}

TEST_CASE("choices are read into their enums and written back by the same names") {
  const auto c = parse_config(R"(
moe: {score_func: sigmoid, drop_policy: position}
schedule: {decay: constant}
data: {source: dataset, on_corrupt: fail}
)",
                              {"train.device=cuda", "train.dtype=bfloat16"});
  CHECK(c.moe.score_func == ScoreFunc::kSigmoid);
  CHECK(c.moe.drop_policy == DropPolicy::kPosition);
  CHECK(c.schedule.decay == ScheduleDecay::kConstant);
  CHECK(c.data.source == DataSourceKind::kDataset);
  CHECK(c.data.on_corrupt == OnCorrupt::kFail);
  CHECK(c.train.device == DeviceKind::kCuda);
  CHECK(c.train.dtype == TrainDtype::kBFloat16);
  CHECK_THAT(to_yaml(c), Contains("score_func: sigmoid\n") && Contains("drop_policy: position\n") &&
                             Contains("decay: constant\n") && Contains("source: dataset\n") &&
                             Contains("on_corrupt: fail\n") && Contains("device: cuda\n") &&
                             Contains("dtype: bfloat16\n"));
  const Config defaults;
  CHECK_THAT(to_yaml(defaults), Contains("score_func: softmax\n") &&
                                    Contains("drop_policy: probs\n") &&
                                    Contains("decay: cosine\n") && Contains("source: text\n") &&
                                    Contains("on_corrupt: skip\n") && Contains("device: cpu\n") &&
                                    Contains("dtype: float32\n"));
  CHECK(parse_config("schedule: {decay: linear}").schedule.decay == ScheduleDecay::kLinear);
  // A bad name is reported where it was written, with the valid names.
  CHECK_THROWS_WITH(parse_config("", {"schedule.decay=step"}),
                    Contains("--set schedule.decay=step: schedule.decay='step' is not one of: "
                             "cosine, linear, constant"));
  CHECK_THROWS_WITH(parse_config("moe:\n  score_func: [softmax]\n", {}, "x.yaml"),
                    Contains("x.yaml:2:15: moe.score_func: expected a string, got a list"));
}

TEST_CASE("overrides replace values, lists included") {
  auto c = parse_config("model: {d_model: 64}", {"model.d_model=256", "data.extensions=[.txt,.md]",
                                                 "moe.score_func=sigmoid", "train.steps=3"});
  CHECK(c.model.d_model == 256);
  CHECK(c.data.extensions.size() == 2);
  CHECK(c.moe.score_func == ScoreFunc::kSigmoid);
  CHECK(c.train.steps == 3);

  // An override wins over the file, fills a section the file leaves empty,
  // and reads bools and floats as YAML.
  auto d = parse_config("optim: {lr: 0.01}\nparallel:\n",
                        {"optim.lr=1e-3", "parallel.zero1=true", "model.tie_embeddings=false"});
  CHECK(d.optim.lr == 1e-3);
  CHECK(d.parallel.zero1);
  CHECK_FALSE(d.model.tie_embeddings);
  // Of two overrides of one key, the last wins.
  CHECK(parse_config("", {"train.steps=5", "train.steps=6"}).train.steps == 6);
}

TEST_CASE("unknown keys and sections name the path and suggest the fix") {
  CHECK_THROWS_WITH(parse_config("model: {dmodel: 3}", {}, "cfg.yaml"),
                    Contains("cfg.yaml") && Contains("unknown key 'model.dmodel'") &&
                        Contains("did you mean 'model.d_model'") &&
                        Contains("valid keys of 'model'"));
  CHECK_THROWS_WITH(parse_config("modle: {}"),
                    Contains("unknown section 'modle'") && Contains("did you mean 'model'"));
  CHECK_THROWS_WITH(parse_config("", {"model.d_modle=3"}),
                    Contains("--set model.d_modle=3") && Contains("did you mean 'model.d_model'"));
  CHECK_THROWS_WITH(parse_config("", {"model.zzzzzz=3"}), !Contains("did you mean"));
  CHECK_THROWS_WITH(parse_config("", {"trian.steps=3"}), Contains("did you mean 'train'"));
  CHECK_THROWS_WITH(parse_config("", {"model.d_model"}), Contains("key.path=value"));
  CHECK_THROWS_WITH(parse_config("", {"model.d_model="}), Contains("needs a value"));
  CHECK_THROWS_WITH(parse_config("", {"=3"}), Contains("--set =3") && Contains("key.path=value"));
  CHECK_THROWS_WITH(parse_config("", {"model=3"}), Contains("name a key inside 'model'"));
  CHECK_THROWS_WITH(parse_config("", {"data.path=[a"}),
                    Contains("--set data.path=[a") && Contains("not valid YAML"));
  CHECK_THROWS_WITH(parse_config("model: 3", {"model.d_model=5"}, "cfg.yaml"),
                    Contains("--set model.d_model=5") && Contains("cfg.yaml gives it as '3'"));
}

TEST_CASE("keys are reported where they are in the file") {
  CHECK_THROWS_WITH(parse_config("model:\n  d_model: 64\n  dmodel: 3\n", {}, "cfg.yaml"),
                    Contains("cfg.yaml:3:3: unknown key 'model.dmodel'"));
  CHECK_THROWS_WITH(parse_config("model:\n  d_model: abc\n", {}, "cfg.yaml"),
                    Contains("cfg.yaml:2:12: model.d_model: expected an integer"));
  // yaml-cpp would quietly keep the first of two equal keys.
  CHECK_THROWS_WITH(parse_config("model:\n  d_model: 64\n  d_model: 128\n", {}, "cfg.yaml"),
                    Contains("cfg.yaml:3:3: 'model.d_model' is given twice (first on line 2)"));
  CHECK_THROWS_WITH(parse_config("train: {}\ntrain: {}\n"), Contains("'train' is given twice"));
  CHECK_THROWS_WITH(parse_config("model: {[a]: 3}"),
                    Contains("a key of 'model' must be a plain name"));
  CHECK_THROWS_WITH(parse_config("? [a]\n: 3\n"), Contains("a section name must be a plain name"));
}

TEST_CASE("wrong types name the key and what was expected") {
  CHECK_THROWS_WITH(parse_config("model: {d_model: abc}"),
                    Contains("model.d_model: expected an integer, got 'abc'"));
  CHECK_THROWS_WITH(parse_config("model: {d_model: 1.5}"), Contains("expected an integer"));
  CHECK_THROWS_WITH(parse_config("optim: {lr: fast}"),
                    Contains("optim.lr: expected a finite number"));
  CHECK_THROWS_WITH(parse_config("model: {tie_embeddings: maybe}"),
                    Contains("model.tie_embeddings: expected true or false"));
  CHECK_THROWS_WITH(
      parse_config("data: {extensions: .txt}"),
      Contains("data.extensions: expected a list of strings") && Contains("e.g. [.txt]"));
  CHECK_THROWS_WITH(parse_config("data: {extensions: [[.txt]]}"),
                    Contains("data.extensions: expected a list of strings"));
  CHECK_THROWS_WITH(parse_config("optim: {lr: .inf}"),
                    Contains("optim.lr: expected a finite number"));
  CHECK_THROWS_WITH(parse_config("optim: {lr: [1]}"),
                    Contains("optim.lr: expected a number, got a list"));
  CHECK_THROWS_WITH(parse_config("model: {d_model: {a: 1}}"),
                    Contains("model.d_model: expected an integer, got a map"));
  CHECK_THROWS_WITH(parse_config("model: {d_model: }"),
                    Contains("model.d_model: expected an integer, got nothing"));
  CHECK_THROWS_WITH(parse_config("train: {steps: 99999999999999999999}"),
                    Contains("train.steps: expected an integer"));
  CHECK_THROWS_WITH(
      parse_config("", {"parallel.zero1=2"}),
      Contains("--set parallel.zero1=2") && Contains("parallel.zero1: expected true or false"));
  CHECK_THROWS_WITH(parse_config("", {"data.extensions=.md"}),
                    Contains("--set data.extensions=.md") && Contains("e.g. [.md]"));
  CHECK_THROWS_WITH(parse_config("data: {path: [a, b]}"),
                    Contains("data.path: expected a string, got a list"));
  CHECK_THROWS_WITH(parse_config("model: 3"), Contains("section 'model' must be a map"));
  CHECK_THROWS_WITH(parse_config("- a\n- b"), Contains("top level must be a map"));
  CHECK_THROWS_WITH(parse_config("", {"train.steps=[1]"}),
                    Contains("--set train.steps=[1]") && Contains("expected an integer"));
}

TEST_CASE("YAML syntax errors give the line and column") {
  CHECK_THROWS_WITH(parse_config("model: {d_model: 3\n", {}, "bad.yaml"),
                    Contains("bad.yaml:") && Contains("YAML syntax error"));
  CHECK_THROWS_WITH(parse_config("model:\n  d_model: 1\n   n_heads: 2\n", {}, "bad.yaml"),
                    Contains("bad.yaml:3:") && Contains("YAML syntax error"));
  CHECK_THROWS_AS(parse_config("a: *nowhere"), ConfigError);
}

TEST_CASE("impossible values are refused with the rule that failed") {
  auto refuses = [](const std::string& yaml, const std::string& text) {
    INFO(yaml);
    CHECK_THROWS_WITH(parse_config(yaml), Contains(text));
  };
  refuses("moe: {num_experts: 4, top_k: 6}", "moe.top_k=6 must be between 1 and moe.num_experts=4");
  refuses("model: {d_model: 130, n_heads: 4}",
          "model.d_model=130 is not divisible by model.n_heads=4");
  refuses("model: {n_heads: 4, n_kv_heads: 3}", "not divisible by model.n_kv_heads=3");
  refuses("model: {d_model: 0}", "model.d_model=0 must be at least 1");
  refuses("model: {first_k_dense: 9}", "model.first_k_dense=9");
  refuses("moe: {score_func: relu}", "moe.score_func='relu' is not one of: softmax, sigmoid");
  refuses("moe: {capacity_factor: -1}", "moe.capacity_factor");
  refuses("optim: {lr: 0.001, min_lr: 0.01}", "optim.min_lr");
  refuses("optim: {beta2: 1.0}", "optim.beta2");
  refuses("schedule: {decay: step}", "schedule.decay='step'");
  refuses("data: {seq_len: 5000}", "data.seq_len=5000 exceeds model.max_seq_len");
  refuses("data: {eval_fraction: 0}", "data.eval_fraction");
  refuses("data: {extensions: []}", "data.extensions is empty");
  refuses("model: {vocab_size: 100}", "smaller than the byte tokenizer's 259");
  refuses("train: {device: tpu}", "train.device='tpu' is not one of: cpu, cuda");
  refuses("train: {dtype: float16}", "train.dtype='float16'");
  refuses("parallel: {pp: 2}", "pipeline parallelism is not implemented");
  refuses("parallel: {dp: 0}", "parallel.dp=0 must be at least 1");
  // The rest of the rules, one bad value each.
  refuses("model: {n_layers: 0}", "model.n_layers=0");
  refuses("model: {n_heads: 0}", "model.n_heads=0");
  refuses("model: {n_kv_heads: 0}", "model.n_kv_heads=0");
  refuses("model: {ffn_hidden: 0}", "model.ffn_hidden=0");
  refuses("model: {max_seq_len: 0}", "model.max_seq_len=0");
  refuses("model: {vocab_size: 0}", "model.vocab_size=0");
  refuses("model: {moe_every: 0}", "model.moe_every=0");
  refuses("model: {head_dim: -1}", "model.head_dim=-1");
  refuses("moe: {top_k: 0}", "moe.top_k=0");
  refuses("moe: {num_experts: 0}", "moe.num_experts=0");
  refuses("moe: {drop_policy: random}", "moe.drop_policy='random' is not one of: probs, position");
  refuses("moe: {aux_loss_coef: -0.1}", "moe.aux_loss_coef");
  refuses("moe: {z_loss_coef: -0.1}", "moe.z_loss_coef");
  refuses("moe: {capacity_group: 7}",
          "moe.capacity_group=7 must be 0 (one sequence) or a divisor of data.seq_len");
  refuses("moe: {bias_update_rate: -0.1}", "moe.bias_update_rate");
  refuses("moe: {num_shared_experts: -1}", "moe.num_shared_experts");
  refuses("optim: {lr: 0}", "optim.lr");
  refuses("optim: {min_lr: -0.1}", "optim.min_lr");
  refuses("optim: {beta1: -0.1}", "optim.beta1");
  refuses("optim: {eps: 0}", "optim.eps");
  refuses("optim: {weight_decay: -1}", "optim.weight_decay");
  refuses("optim: {grad_clip: -1}", "optim.grad_clip");
  refuses("schedule: {warmup_steps: -1}", "schedule.warmup_steps");
  refuses("schedule: {decay_steps: -1}", "schedule.decay_steps");
  refuses("train: {checkpoint_every: -1}", "train.checkpoint_every=-1 must be >= 0");
  refuses("train: {stop_at: 5}", "train.stop_at needs train.checkpoint_every > 0");
  refuses("train: {keep_checkpoints: 0}", "train.keep_checkpoints");
  refuses("train: {max_nonfinite_steps: 0}", "train.max_nonfinite_steps");
  refuses("lora: {rank: -1}", "lora.rank");
  refuses("lora: {rank: 4, dropout: 1.0}", "lora.dropout");
  refuses("lora: {rank: 4, targets: []}", "lora.targets is empty");
  refuses("finetune: {router_lr: 0}", "finetune.router_lr");
  refuses("train: {eval_every: 0}\nfinetune: {early_stop_patience: 2}",
          "needs train.eval_every > 0");
  refuses("data: {source: hf}", "data.source='hf' is not one of: text, dataset");
  refuses("data: {on_corrupt: ignore}", "data.on_corrupt='ignore' is not one of: skip, fail");
  refuses("data: {shuffle_block: 0}", "data.shuffle_block");
  refuses("data: {prefetch_threads: 65}", "data.prefetch_threads=65 must be between 0 and 64");
  refuses("data: {max_skipped: -1}", "data.max_skipped=-1 must be >= 0");
  refuses("data: {tokenizer: bpe}", "data.tokenizer='bpe'");
  refuses("data: {eval_fraction: 1}", "data.eval_fraction");
  refuses("data: {seq_len: 0}", "data.seq_len=0");
  refuses("train: {steps: 0}", "train.steps=0");
  refuses("train: {micro_batch_size: 0}", "train.micro_batch_size=0");
  refuses("train: {grad_accum: 0}", "train.grad_accum=0");
  refuses("train: {eval_every: -1}", "train.eval_every=-1");
  refuses("train: {eval_batches: 0}", "train.eval_batches=0");
  refuses("train: {log_every: 0}", "train.log_every=0");
  refuses("train: {threads: -1}", "train.threads=-1");
  refuses("parallel: {tp: 0}", "parallel.tp=0");
  refuses("parallel: {ep: 0}", "parallel.ep=0");
  // Edges that are allowed.
  CHECK_NOTHROW(
      parse_config("model: {first_k_dense: 4, n_layers: 4}\nmoe: {top_k: 8, num_experts: 8}"));
  CHECK_NOTHROW(parse_config("model: {d_model: 130, n_heads: 5, n_kv_heads: 5, head_dim: 26}"));
  CHECK_NOTHROW(parse_config("optim: {min_lr: 0, beta1: 0, weight_decay: 0, grad_clip: 0}"));
}

TEST_CASE("validation names the source, and works on a Config built in code") {
  CHECK_THROWS_WITH(parse_config("moe: {top_k: 9}", {}, "cfg.yaml"),
                    Contains("cfg.yaml: moe.top_k=9"));
  Config c;
  CHECK_NOTHROW(validate(c));
  c.model.d_model = 130;
  CHECK_THROWS_AS(validate(c), ConfigError);
  CHECK_THROWS_WITH(validate(c), Contains("set model.head_dim"));
}

TEST_CASE("a missing file is a ConfigError naming it") {
  CHECK_THROWS_AS(load_config("/nonexistent/moxie.yaml"), ConfigError);
  CHECK_THROWS_WITH(load_config("/nonexistent/moxie.yaml"), Contains("/nonexistent/moxie.yaml"));
}

TEST_CASE("load_config reads a file, applies overrides and names the file in errors") {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("moxie_test_config_" + std::to_string(::getpid()) + ".yaml"))
                               .string();
  {
    std::ofstream out(path);
    out << "model:\n  d_model: 64\n  dmodel: 3\n";
  }
  CHECK_THROWS_WITH(load_config(path), Contains(path + ":3:3: unknown key 'model.dmodel'") &&
                                           Contains("did you mean 'model.d_model'"));
  // kFullYaml fine-tunes runs/pre/checkpoints/step-00000100: a base run
  // whose config.yaml has the same model and moe sections.
  std::string full = kFullYaml;
  const auto base_run =
      std::filesystem::temp_directory_path() / ("moxie_test_base_" + std::to_string(::getpid()));
  const std::string base_ckpt = (base_run / "checkpoints" / "step-00000100").string();
  full.replace(full.find("runs/pre/checkpoints/step-00000100"),
               std::string("runs/pre/checkpoints/step-00000100").size(), base_ckpt);
  std::filesystem::create_directories(base_ckpt);
  {
    std::ofstream out(base_run / "config.yaml");
    out << "model: {d_model: 96, n_layers: 3}\n";
  }
  {
    std::ofstream out(path);
    out << full;
  }
  CHECK_THROWS_WITH(load_config(path), Contains("finetune.base=" + base_ckpt + " fixes them") &&
                                           Contains("remove the model and moe sections"));
  {
    std::ofstream out(path);
    out << "finetune: {base: " << base_ckpt << "}\n";
  }
  const auto c = load_config(path, {"train.steps=3"});
  CHECK(c.train.steps == 3);
  CHECK(c.model.d_model == 96);  // from the base run
  CHECK(c.model.n_layers == 3);
  std::filesystem::remove_all(base_run);
  {
    std::ofstream out(path);
    out << "finetune: {base: /nonexistent/checkpoints/step-1}\n";
  }
  CHECK_THROWS_WITH(load_config(path), Contains("has no run config /nonexistent/config.yaml"));
  std::remove(path.c_str());
}

TEST_CASE("a folder or a FIFO given as the config is refused by what it is") {
  testing::TempDir dir;
  std::filesystem::create_directory(dir.file("configs.yaml"));
  CHECK_THROWS_AS(load_config(dir.file("configs.yaml")), ConfigError);
  CHECK_THROWS_WITH(load_config(dir.file("configs.yaml")),
                    Contains(dir.file("configs.yaml")) && Contains("a directory"));
  const auto fifo = dir.file("pipe.yaml");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(load_config(fifo), Contains(fifo) && Contains("a FIFO"));
}

TEST_CASE("values that size tensors, threads and buffers are bounded, naming the key") {
  auto refused = [](const std::string& key, int64_t limit) {
    const std::string set = key + "=" + std::to_string(limit + 1);
    CHECK_THROWS_WITH(parse_config("", {set}, "big.yaml"),
                      Contains("big.yaml") && Contains(key + "=" + std::to_string(limit + 1)) &&
                          Contains("more than " + std::to_string(limit)));
  };
  refused("model.d_model", limits::kWidth);
  refused("model.ffn_hidden", limits::kWidth);
  refused("model.vocab_size", limits::kVocab);
  refused("model.n_layers", limits::kLayers);
  refused("model.n_heads", limits::kHeads);
  refused("model.max_seq_len", limits::kSeqLen);
  refused("moe.num_experts", limits::kExperts);
  refused("moe.expert_hidden", limits::kWidth);
  refused("train.threads", limits::kThreads);
  refused("train.micro_batch_size", limits::kBatch);
  refused("train.grad_accum", limits::kBatch);
  refused("parallel.dp", limits::kRanks);
  refused("data.shuffle_block", limits::kShuffleBlock);
  // Each within its own bound, their product over the micro-batch's.
  const int64_t seq = limits::kSeqLen, rows = limits::kTokensPerMicroBatch / seq + 1;
  CHECK_THROWS_WITH(parse_config("", {"model.max_seq_len=" + std::to_string(seq),
                                      "data.seq_len=" + std::to_string(seq),
                                      "train.micro_batch_size=" + std::to_string(rows)}),
                    Contains("train.micro_batch_size") && Contains("data.seq_len") &&
                        Contains("tokens in one micro-batch"));
  CHECK_THROWS_WITH(parse_config("", {"data.prefetch_mb=999999999999"}),
                    Contains("data.prefetch_mb=999999999999") && Contains("memory"));
  CHECK_THROWS_WITH(parse_config("", {"train.steps=99999999999999999999"}),
                    Contains("train.steps") && Contains("expected an integer"));
  // The bounds themselves are accepted.
  CHECK(parse_config("", {"train.threads=" + std::to_string(limits::kThreads)}).train.threads ==
        limits::kThreads);
}
