// Hugging Face model folders, the part that needs no torch: config.json of
// Mixtral and Qwen2-MoE to moxie's options, and which safetensors files a
// folder's weights are in. Every value read is checked for its type and a
// stated bound, and named with its key, before anything is sized by it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/options.h"
#include "experts/options.h"

namespace moxie {

// The Hugging Face classes moxie writes and reads. Mixtral: an MoE FFN in
// every layer, softmax routing with renormalised top-k weights, no shared
// experts; Qwen2-MoE: dense layers allowed, a gated shared expert in every
// sparse layer, optional q/k/v biases and renormalisation.
enum class HfArch { kMixtral, kQwen2Moe };
const char* hf_class_name(HfArch arch);
// Mixtral where it can express the model, else Qwen2-MoE.
HfArch hf_arch_for(const ModelOptions& model, const MoEOptions& moe);

struct HfModelConfig {
  HfArch arch = HfArch::kMixtral;
  ModelOptions model;
  MoEOptions moe;
};

// The largest config.json or model.safetensors.index.json read.
constexpr uint64_t kMaxHfJsonBytes = 64u << 20;

// Reads a config.json of model_type mixtral or qwen2_moe (a regular file).
// Throws std::runtime_error naming the file and the key for anything
// missing, of the wrong JSON type, out of its bound, or unsupported (a
// sliding window, RoPE scaling, a sparse-layer pattern moxie cannot lay out).
HfModelConfig read_hf_config(const std::string& config_json_path);
// The same, from the file's bytes (`path` names it in errors).
HfModelConfig parse_hf_config(const std::string& bytes, const std::string& path);

// The safetensors files of a Hugging Face folder (or one file): the files
// model.safetensors.index.json's weight_map names, each resolved inside the
// folder, or model.safetensors. std::runtime_error naming the index and the
// entry otherwise.
std::vector<std::string> hf_weight_files(const std::string& path);
// The distinct files a model.safetensors.index.json's weight_map names, from
// its bytes (`index_path` names it in errors), before they are resolved.
std::vector<std::string> parse_hf_weight_map(const std::string& bytes,
                                             const std::string& index_path);

}  // namespace moxie
