// Config: defaults, round trip, overrides, and one clear error per kind of mistake.
#include <catch2/catch.hpp>

#include "core/config.h"

using namespace moxie;
using Catch::Contains;

TEST_CASE("an empty config gives the structs' defaults") {
  auto c = parse_config("");
  CHECK(c.model.d_model == ModelOptions{}.d_model);
  CHECK(c.moe.score_func == "softmax");
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
  CHECK(c.train.dtype == "bfloat16");
  const auto text = to_yaml(c);
  const auto again = parse_config(text);
  CHECK(to_yaml(again) == text);
  CHECK(again.optim.lr == c.optim.lr);  // doubles survive exactly
  CHECK(again.moe.capacity_factor == c.moe.capacity_factor);
  CHECK(text.find("rope_theta: 500000.0") != std::string::npos);
  CHECK(text.find("min_lr: 3.0e-05") != std::string::npos);  // a float to YAML 1.1 readers too
}

TEST_CASE("overrides replace values, lists included") {
  auto c = parse_config("model: {d_model: 64}", {"model.d_model=256", "data.extensions=[.txt,.md]",
                                                 "moe.score_func=sigmoid", "train.steps=3"});
  CHECK(c.model.d_model == 256);
  CHECK(c.data.extensions.size() == 2);
  CHECK(c.moe.score_func == "sigmoid");
  CHECK(c.train.steps == 3);
}

TEST_CASE("unknown keys and sections name the path and suggest the fix") {
  CHECK_THROWS_WITH(parse_config("model: {dmodel: 3}", {}, "cfg.yaml"),
                    Contains("cfg.yaml") && Contains("unknown key 'model.dmodel'") &&
                        Contains("did you mean 'model.d_model'") && Contains("valid keys of 'model'"));
  CHECK_THROWS_WITH(parse_config("modle: {}"), Contains("unknown section 'modle'") &&
                                                   Contains("did you mean 'model'"));
  CHECK_THROWS_WITH(parse_config("", {"model.d_modle=3"}),
                    Contains("--set model.d_modle=3") && Contains("did you mean 'model.d_model'"));
  CHECK_THROWS_WITH(parse_config("", {"model.zzzzzz=3"}), !Contains("did you mean"));
  CHECK_THROWS_WITH(parse_config("", {"trian.steps=3"}), Contains("did you mean 'train'"));
  CHECK_THROWS_WITH(parse_config("", {"model.d_model"}), Contains("key.path=value"));
  CHECK_THROWS_WITH(parse_config("", {"model.d_model="}), Contains("needs a value"));
}

TEST_CASE("wrong types name the key and what was expected") {
  CHECK_THROWS_WITH(parse_config("model: {d_model: abc}"),
                    Contains("model.d_model: expected an integer, got 'abc'"));
  CHECK_THROWS_WITH(parse_config("model: {d_model: 1.5}"), Contains("expected an integer"));
  CHECK_THROWS_WITH(parse_config("optim: {lr: fast}"), Contains("optim.lr: expected a finite number"));
  CHECK_THROWS_WITH(parse_config("model: {tie_embeddings: maybe}"),
                    Contains("model.tie_embeddings: expected true or false"));
  CHECK_THROWS_WITH(parse_config("data: {extensions: .txt}"),
                    Contains("data.extensions: expected a list of strings"));
  CHECK_THROWS_WITH(parse_config("data: {path: [a, b]}"), Contains("data.path: expected a string, got a list"));
  CHECK_THROWS_WITH(parse_config("model: 3"), Contains("section 'model' must be a map"));
  CHECK_THROWS_WITH(parse_config("- a\n- b"), Contains("top level must be a map"));
  CHECK_THROWS_WITH(parse_config("", {"train.steps=[1]"}), Contains("--set train.steps=[1]") &&
                                                               Contains("expected an integer"));
}

TEST_CASE("YAML syntax errors give the line and column") {
  CHECK_THROWS_WITH(parse_config("model: {d_model: 3\n", {}, "bad.yaml"),
                    Contains("bad.yaml:") && Contains("YAML syntax error"));
}

TEST_CASE("impossible values are refused with the rule that failed") {
  auto refuses = [](const std::string& yaml, const std::string& text) {
    INFO(yaml);
    CHECK_THROWS_WITH(parse_config(yaml), Contains(text));
  };
  refuses("moe: {num_experts: 4, top_k: 6}", "moe.top_k=6 must be between 1 and moe.num_experts=4");
  refuses("model: {d_model: 130, n_heads: 4}", "model.d_model=130 is not divisible by model.n_heads=4");
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
  refuses("train: {device: cuda}", "train.device='cuda' is not supported");
  refuses("train: {dtype: float16}", "train.dtype='float16'");
  refuses("parallel: {pp: 2}", "pipeline parallelism is not implemented");
  refuses("parallel: {dp: 0}", "parallel.dp=0 must be at least 1");
}

TEST_CASE("a missing file is a ConfigError naming it") {
  CHECK_THROWS_AS(load_config("/nonexistent/moxie.yaml"), ConfigError);
  CHECK_THROWS_WITH(load_config("/nonexistent/moxie.yaml"), Contains("/nonexistent/moxie.yaml"));
}
