// Hugging Face interchange: Mixtral's config.json and safetensors weights
// (classic per-expert names: model.layers.N.block_sparse_moe.experts.E.w1.weight)
// to and from moxie's CausalLM, whose experts are stacked per layer.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "core/options.h"
#include "core/safetensors.h"
#include "core/transformer.h"
#include "experts/options.h"

namespace moxie {

struct HfModelConfig {
  ModelOptions model;
  MoEOptions moe;
};

// One tensor of a safetensors file as a fresh torch tensor of its own dtype.
// Copied with memcpy: tensor data in the format is not aligned to its dtype.
torch::Tensor read_safetensor(const safetensors::Reader& reader, const std::string& name);

// Reads a MixtralForCausalLM config.json. Throws std::runtime_error naming the
// file and the key for anything missing or unsupported (e.g. a sliding window).
HfModelConfig read_hf_mixtral_config(const std::string& config_json_path);

// The model's tensors under Hugging Face names (experts split per expert).
// Tensors are views of the live parameters (or, with `grads`, of their
// gradients, which must be defined); nothing is copied.
std::map<std::string, torch::Tensor> to_hf_state(CausalLM& model, bool grads = false);

// Copies weights from a safetensors file with HF names into the model,
// converting dtype. Every model tensor must be present with the right shape,
// and every tensor in the file must be used; otherwise one error names the
// file and the tensors at fault.
void load_hf_safetensors(CausalLM& model, const std::string& path);

// Writes the model's weights with HF names (float32 or the parameters' dtype).
void save_hf_safetensors(CausalLM& model, const std::string& path);

// A MixtralForCausalLM config.json for these options. Throws
// std::runtime_error naming what Mixtral cannot express (dense layers,
// shared experts, sigmoid scores, a balancing bias, capacity dropping).
void write_hf_mixtral_config(const ModelOptions& model, const MoEOptions& moe, const std::string& path);

}  // namespace moxie
