// Hugging Face config.json and model.safetensors.index.json
// (core/checkpoint/hf_config.h): what transformers writes is read; a value of
// the wrong JSON type, past its bound or missing is one error naming the file
// and the key (no JSON library message); the sparse-layer pattern is found in
// one pass; index entries stay inside the folder.
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/checkpoint/hf_config.h"
#include "tests/testing.h"

using namespace moxie;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

// The keys a transformers 5 MixtralConfig writes that moxie reads.
nlohmann::json mixtral() {
  return {{"model_type", "mixtral"},
          {"vocab_size", 260},
          {"hidden_size", 64},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"head_dim", nullptr},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5},
          {"rope_parameters", {{"rope_theta", 1e6}, {"rope_type", "default"}}},
          {"num_local_experts", 4},
          {"num_experts_per_tok", 2},
          {"intermediate_size", 48},
          {"sliding_window", nullptr},
          {"hidden_act", "silu"},
          {"tie_word_embeddings", false}};
}

nlohmann::json qwen(int64_t layers, int64_t step, nlohmann::json mlp_only) {
  auto j = mixtral();
  j.erase("num_local_experts");
  j.erase("sliding_window");
  j["model_type"] = "qwen2_moe";
  j["num_hidden_layers"] = layers;
  j["num_experts"] = 4;
  j["moe_intermediate_size"] = 32;
  j["shared_expert_intermediate_size"] = 48;
  j["decoder_sparse_step"] = step;
  j["mlp_only_layers"] = std::move(mlp_only);
  return j;
}

HfModelConfig parse(const nlohmann::json& j) { return parse_hf_config(j.dump(), "config.json"); }

}  // namespace

TEST_CASE("hf config: what transformers writes is read") {
  const auto c = parse(mixtral());
  CHECK(c.arch == HfArch::kMixtral);
  CHECK(c.model.vocab_size == 260);
  CHECK(c.model.max_seq_len == 64);
  CHECK(c.model.rope_theta == 1e6);
  CHECK(c.moe.num_experts == 4);
  CHECK(c.moe.top_k == 2);
  // Sparse layers 1 and 3 of 4 (decoder_sparse_step 2): dense first, then every 2nd.
  const auto q = parse(qwen(4, 2, nlohmann::json::array()));
  CHECK(q.model.first_k_dense == 1);
  CHECK(q.model.moe_every == 2);
  // Layer 0 dense by mlp_only_layers, the rest sparse.
  const auto d = parse(qwen(3, 1, {0}));
  CHECK(d.model.first_k_dense == 1);
  CHECK(d.model.moe_every == 1);
  // Only the last layer sparse, and no sparse layer at all.
  const auto one = parse(qwen(3, 3, nlohmann::json::array()));
  CHECK(one.model.first_k_dense == 2);
  const auto none = parse(qwen(2, 1, {0, 1}));
  CHECK(none.model.first_k_dense == 2);
}

TEST_CASE("hf config: a wrong type, a value past its bound or a missing key names the key") {
  struct Case {
    const char* key;
    nlohmann::json value;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"hidden_size", "64", "key 'hidden_size' is a string (\"64\"), expected an integer"},
      {"hidden_size", 64.5, "key 'hidden_size' is a number with a fraction"},
      {"vocab_size", int64_t{1} << 40,
       "key 'vocab_size' is an integer (1099511627776), expected an "
       "integer from 1 to 4194304"},
      {"vocab_size", 0, "key 'vocab_size' is an integer (0)"},
      {"num_hidden_layers", -3, "key 'num_hidden_layers' is an integer (-3)"},
      {"num_hidden_layers", 18446744073709551615u, "key 'num_hidden_layers'"},
      {"num_key_value_heads", 8,
       "key 'num_key_value_heads' is an integer (8), expected an integer "
       "from 1 to 4"},
      {"num_experts_per_tok", 5, "key 'num_experts_per_tok'"},
      {"rms_norm_eps", "small", "key 'rms_norm_eps' is a string"},
      {"rms_norm_eps", 0, "key 'rms_norm_eps' is an integer (0), expected a number in (0"},
      {"tie_word_embeddings", 1,
       "key 'tie_word_embeddings' is an integer (1), expected true or "
       "false"},
      {"hidden_act", 3, "key 'hidden_act' is an integer (3), expected a string"},
      {"max_position_embeddings", nlohmann::json::array(),
       "key 'max_position_embeddings' is an "
       "array"},
      {"model_type", 7, "key 'model_type' is an integer"},
  };
  for (const auto& [key, value, says] : cases) {
    INFO(key << " = " << value.dump());
    auto j = mixtral();
    j[key] = value;
    try {
      parse(j);
      FAIL("accepted");
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      CHECK_THAT(what, Contains("config.json") && Contains(says));
      CHECK(what.find("type_error") == std::string::npos);
      CHECK(what.find("[json.exception") == std::string::npos);
    }
  }
  auto j = mixtral();
  j.erase("num_local_experts");
  CHECK_THROWS_WITH(parse(j), Contains("missing key 'num_local_experts' for a MixtralForCausalLM"));
  CHECK_THROWS_WITH(parse(qwen(4, 1, {9})), Contains("key 'mlp_only_layers' is an integer (9)"));
  CHECK_THROWS_WITH(parse(qwen(4, 1, "0")), Contains("key 'mlp_only_layers' is a string"));
  CHECK_THROWS_WITH(parse(qwen(4, 1, {1})), Contains("not dense layers first"));
  CHECK_THROWS_WITH(parse_hf_config("{\"model_type\": ", "config.json"),
                    Contains("config.json is not valid JSON") && !Contains("[json.exception"));
  CHECK_THROWS_WITH(parse_hf_config("[1]", "config.json"),
                    Contains("is an array, not a JSON object"));
  CHECK_THROWS_WITH(parse_hf_config(std::string(100, '[') + std::string(100, ']'), "config.json"),
                    Contains("nests deeper than"));
}

TEST_CASE("hf config: the files, regular and inside the folder") {
  testing::TempDir tmp;
  const auto dir = tmp.file("model");
  fs::create_directories(dir);
  CHECK_THROWS_WITH(read_hf_config(dir), Contains(dir) && Contains("a directory"));
  auto index = [&](const nlohmann::json& map) {
    testing::write_file(fs::path(dir) / "model.safetensors.index.json",
                        nlohmann::json{{"weight_map", map}}.dump());
  };
  index({{"a", "model-1.safetensors"}, {"b", "model-2.safetensors"}, {"c", "model-1.safetensors"}});
  const auto files = hf_weight_files(dir);
  REQUIRE(files.size() == 2);
  CHECK(files[0] == (fs::weakly_canonical(dir) / "model-1.safetensors").string());
  index({{"a", "../elsewhere.safetensors"}});
  CHECK_THROWS_WITH(hf_weight_files(dir),
                    Contains("model.safetensors.index.json") && Contains("climbs out"));
  index({{"a", "/etc/passwd"}});
  CHECK_THROWS_WITH(hf_weight_files(dir), Contains("is absolute"));
  fs::create_symlink("/tmp", fs::path(dir) / "out");
  index({{"a", "out/x.safetensors"}});
  CHECK_THROWS_WITH(hf_weight_files(dir), Contains("leads out of the folder through a link"));
  index({{"a", 3}});
  CHECK_THROWS_WITH(hf_weight_files(dir),
                    Contains("weight_map entry 'a' is an integer, expected the name"));
  index(nlohmann::json::object());
  CHECK_THROWS_WITH(hf_weight_files(dir), Contains("names no file"));
}
