// Hugging Face config.json and model.safetensors.index.json, read with every
// value's type and bound checked under its key's name.
#include "core/checkpoint/hf_config.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "core/common/file_io.h"

namespace moxie {
namespace {

using Json = nlohmann::json;

// Stated bounds on the values that size a model: far above any released
// model, far below what would make an allocation fail.
constexpr int64_t kMaxVocab = int64_t{1} << 22;
constexpr int64_t kMaxWidth = int64_t{1} << 16;
constexpr int64_t kMaxFfn = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxExperts = int64_t{1} << 16;
constexpr int64_t kMaxPositions = int64_t{1} << 24;
constexpr int kMaxJsonDepth = 16;

const char* json_type(const Json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a number with a fraction";
  if (v.is_boolean()) return "a boolean";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

// A JSON object read key by key: each getter names the file, the key, what
// was expected and what is there (never a JSON library's message).
class Keys {
 public:
  Keys(const Json& j, std::string path, std::string what)
      : j_(j), path_(std::move(path)), what_(std::move(what)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    if (!has(key)) throw error(std::string("missing key '") + key + "'" + what_);
    return integer_value(key, j_.at(key), lo, hi);
  }
  int64_t integer_or(const char* key, int64_t fallback, int64_t lo, int64_t hi) const {
    return has(key) ? integer_value(key, j_.at(key), lo, hi) : fallback;
  }
  double number(const char* key, double lo, double hi) const {
    if (!has(key)) throw error(std::string("missing key '") + key + "'" + what_);
    return number_value(key, j_.at(key), lo, hi);
  }
  double number_or(const char* key, double fallback, double lo, double hi) const {
    return has(key) ? number_value(key, j_.at(key), lo, hi) : fallback;
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_boolean()) throw wrong(key, v, "true or false");
    return v.get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_string()) throw wrong(key, v, "a string");
    return v.get<std::string>();
  }
  std::runtime_error error(const std::string& why) const {
    return std::runtime_error(path_ + ": " + why);
  }
  std::runtime_error wrong(const std::string& key, const Json& v, const std::string& want) const {
    return error("key '" + key + "' is " + json_type(v) + " (" + excerpt(v.dump(), 40) +
                 "), expected " + want + what_);
  }

 private:
  int64_t integer_value(const std::string& key, const Json& v, int64_t lo, int64_t hi) const {
    const std::string want = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    if (!v.is_number_integer()) throw wrong(key, v, want);
    if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(hi)
                               : v.get<int64_t>() < lo || v.get<int64_t>() > hi)
      throw wrong(key, v, want);
    const auto n = v.get<int64_t>();
    if (n < lo) throw wrong(key, v, want);
    return n;
  }
  double number_value(const std::string& key, const Json& v, double lo, double hi) const {
    const std::string want =
        "a number in (" + excerpt(std::to_string(lo)) + ", " + excerpt(std::to_string(hi)) + "]";
    if (!v.is_number()) throw wrong(key, v, want);
    const double x = v.get<double>();
    if (!(x > lo && x <= hi)) throw wrong(key, v, want);
    return x;
  }
  const Json& j_;
  std::string path_, what_;
};

Json parse_object(const std::string& bytes, const std::string& path) {
  Json j;
  try {
    j = Json::parse(bytes, [&](int depth, Json::parse_event_t, Json&) {
      if (depth > kMaxJsonDepth) {
        throw std::runtime_error(path + " nests deeper than " + std::to_string(kMaxJsonDepth) +
                                 " levels; it is not a Hugging Face file");
      }
      return true;
    });
  } catch (const Json::exception& e) {
    // The parser's message says where; its "[json.exception...]" prefix goes.
    std::string why = e.what();
    if (const auto at = why.find("] "); at != std::string::npos) why = why.substr(at + 2);
    throw std::runtime_error(path + " is not valid JSON: " + excerpt(why, 160));
  }
  if (!j.is_object())
    throw std::runtime_error(path + " is " + json_type(j) + ", not a JSON object");
  return j;
}

}  // namespace

const char* hf_class_name(HfArch arch) {
  return arch == HfArch::kMixtral ? "MixtralForCausalLM" : "Qwen2MoeForCausalLM";
}

HfArch hf_arch_for(const ModelOptions& model, const MoEOptions& moe) {
  return moe.num_shared_experts > 0 || model.qkv_bias || model.first_k_dense > 0 ||
                 model.moe_every != 1 || !moe.renormalize
             ? HfArch::kQwen2Moe
             : HfArch::kMixtral;
}

HfModelConfig read_hf_config(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_small_file(path, "Hugging Face config", kMaxHfJsonBytes);
  } catch (const FileError& e) {
    throw std::runtime_error(e.what());
  }
  return parse_hf_config(bytes, path);
}

HfModelConfig parse_hf_config(const std::string& bytes, const std::string& path) {
  const Json j = parse_object(bytes, path);
  const Keys top(j, path, "");
  const std::string type = top.string_or("model_type", "");
  HfModelConfig c;
  if (type == "mixtral") {
    c.arch = HfArch::kMixtral;
  } else if (type == "qwen2_moe") {
    c.arch = HfArch::kQwen2Moe;
  } else {
    throw std::runtime_error(path + ": model_type '" + excerpt(type) +
                             "' is not one moxie imports; it reads mixtral and qwen2_moe folders");
  }
  const Keys k(j, path, std::string(" for a ") + hf_class_name(c.arch) + " config");
  const bool sliding = c.arch == HfArch::kMixtral ? k.has("sliding_window")
                                                  : k.boolean_or("use_sliding_window", false);
  if (sliding) {
    throw std::runtime_error(
        path +
        ": sliding-window attention is not supported (moxie attends to the whole "
        "context); set " +
        std::string(c.arch == HfArch::kMixtral ? "sliding_window to null"
                                               : "use_sliding_window to false"));
  }
  const std::string act = k.string_or("hidden_act", "silu");
  if (act != "silu") {
    throw std::runtime_error(path + ": hidden_act '" + excerpt(act) +
                             "' is not supported (moxie's FFNs are SwiGLU: silu)");
  }
  c.model.vocab_size = k.integer("vocab_size", 1, kMaxVocab);
  c.model.d_model = k.integer("hidden_size", 1, kMaxWidth);
  c.model.n_layers = k.integer("num_hidden_layers", 1, kMaxLayers);
  c.model.n_heads = k.integer("num_attention_heads", 1, kMaxHeads);
  c.model.n_kv_heads = k.integer_or("num_key_value_heads", c.model.n_heads, 1, c.model.n_heads);
  if (k.has("head_dim")) c.model.head_dim = k.integer("head_dim", 1, kMaxWidth);
  c.model.max_seq_len = k.integer("max_position_embeddings", 1, kMaxPositions);
  c.model.norm_eps = k.number("rms_norm_eps", 0.0, 1.0);
  c.model.tie_embeddings = k.boolean_or("tie_word_embeddings", false);
  // transformers 5 nests rope_theta in rope_parameters; 4.x had it at top level.
  if (k.has("rope_parameters") && j.at("rope_parameters").is_object()) {
    const Keys rope(j.at("rope_parameters"), path, " in rope_parameters");
    const std::string rope_type = rope.string_or("rope_type", "default");
    if (rope_type != "default") {
      throw std::runtime_error(path + ": rope_type '" + excerpt(rope_type) +
                               "' is not supported (moxie has plain RoPE)");
    }
    c.model.rope_theta = rope.has("rope_theta") ? rope.number("rope_theta", 0.0, 1e12)
                                                : k.number("rope_theta", 0.0, 1e12);
  } else {
    if (k.has("rope_scaling")) {
      throw std::runtime_error(path + ": rope_scaling is not supported (moxie has plain RoPE)");
    }
    c.model.rope_theta = k.number("rope_theta", 0.0, 1e12);
  }
  c.moe.score_func = ScoreFunc::kSoftmax;
  c.moe.capacity_factor = 0.0;
  c.moe.aux_loss_coef =
      k.has("router_aux_loss_coef") ? k.number_or("router_aux_loss_coef", 0.0, -1.0, 1e6) : 0.0;
  if (c.arch == HfArch::kMixtral) {
    c.model.first_k_dense = 0;
    c.model.moe_every = 1;
    c.moe.num_experts = k.integer("num_local_experts", 1, kMaxExperts);
    c.moe.top_k = k.integer("num_experts_per_tok", 1, c.moe.num_experts);
    c.moe.expert_hidden = k.integer("intermediate_size", 1, kMaxFfn);
    c.moe.renormalize = true;
    return c;
  }
  c.model.qkv_bias = k.boolean_or("qkv_bias", true);  // the class's default
  c.model.ffn_hidden = k.integer("intermediate_size", 1, kMaxFfn);
  c.moe.num_experts = k.integer("num_experts", 1, kMaxExperts);
  c.moe.top_k = k.integer("num_experts_per_tok", 1, c.moe.num_experts);
  c.moe.expert_hidden = k.integer("moe_intermediate_size", 1, kMaxFfn);
  c.moe.renormalize = k.boolean_or("norm_topk_prob", false);
  c.moe.num_shared_experts = 1;
  c.moe.shared_expert_hidden = k.integer("shared_expert_intermediate_size", 1, kMaxFfn);
  // Which layers are sparse, and the moxie layout (first_k_dense, moe_every)
  // that gives the same ones.
  const int64_t n = c.model.n_layers;
  const int64_t step = k.integer_or("decoder_sparse_step", 1, 1, kMaxLayers);
  std::set<int64_t> dense_only;
  if (k.has("mlp_only_layers")) {
    const auto& layers = j.at("mlp_only_layers");
    if (!layers.is_array()) throw k.wrong("mlp_only_layers", layers, "an array of layer numbers");
    for (const auto& l : layers) {
      if (!l.is_number_integer() || l.get<int64_t>() < 0 || l.get<int64_t>() >= n) {
        throw k.wrong("mlp_only_layers", l,
                      "layer numbers from 0 to num_hidden_layers-1=" + std::to_string(n - 1));
      }
      dense_only.insert(l.get<int64_t>());
    }
  }
  std::vector<int64_t> sparse;
  for (int64_t i = 0; i < n; ++i)
    if (!dense_only.count(i) && (i + 1) % step == 0) sparse.push_back(i);
  // Dense layers first, then every k-th: the first sparse layer and the gap
  // to the second say which (all dense: first_k_dense = n_layers; one sparse
  // layer: a gap that reaches past the last layer).
  const int64_t first = sparse.empty() ? n : sparse[0];
  const int64_t every = sparse.size() > 1    ? sparse[1] - sparse[0]
                        : sparse.size() == 1 ? std::max<int64_t>(1, n - first)
                                             : 1;
  size_t at = 0;
  bool same = true;
  for (int64_t i = 0; i < n && same; ++i) {
    const bool want = i >= first && (i - first) % every == 0;
    const bool is = at < sparse.size() && sparse[at] == i;
    same = want == is;
    if (is) ++at;
  }
  if (!same) {
    throw std::runtime_error(
        path +
        ": its sparse layers (decoder_sparse_step, mlp_only_layers) are not dense "
        "layers first and then every k-th layer, the only pattern moxie lays out "
        "(model.first_k_dense, model.moe_every)");
  }
  c.model.first_k_dense = first;
  c.model.moe_every = every;
  return c;
}

std::vector<std::string> parse_hf_weight_map(const std::string& bytes,
                                             const std::string& index_path) {
  const Json j = parse_object(bytes, index_path);
  if (!j.contains("weight_map") || !j.at("weight_map").is_object()) {
    throw std::runtime_error(index_path + " has no weight_map object (tensor name -> file)");
  }
  std::set<std::string> files;
  for (const auto& [name, file] : j.at("weight_map").items()) {
    if (!file.is_string()) {
      throw std::runtime_error(index_path + ": weight_map entry '" + excerpt(name, 80) + "' is " +
                               json_type(file) + ", expected the name of a safetensors file");
    }
    files.insert(file.get<std::string>());
  }
  if (files.empty()) throw std::runtime_error(index_path + ": weight_map names no file");
  return {files.begin(), files.end()};
}

std::vector<std::string> hf_weight_files(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return {path};
  const auto single = fs::path(path) / "model.safetensors";
  const auto index = fs::path(path) / "model.safetensors.index.json";
  if (fs::exists(single)) return {single.string()};
  if (!fs::exists(index)) {
    throw std::runtime_error(path +
                             " has neither model.safetensors nor model.safetensors.index.json");
  }
  std::vector<std::string> out;
  try {
    const auto names = parse_hf_weight_map(
        read_small_file(index.string(), "safetensors index", kMaxHfJsonBytes), index.string());
    for (const auto& f : names) out.push_back(resolve_inside(path, f, index.string()).string());
  } catch (const FileError& e) {
    throw std::runtime_error(e.what());
  }
  return out;
}

}  // namespace moxie
