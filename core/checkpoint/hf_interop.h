// Hugging Face interchange: Mixtral's and Qwen2-MoE's config.json and
// safetensors weights (classic per-expert names, e.g.
// model.layers.N.block_sparse_moe.experts.E.w1.weight) to and from moxie's
// CausalLM, whose experts are stacked per layer.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "core/checkpoint/hf_config.h"
#include "core/checkpoint/safetensors.h"
#include "core/model/options.h"
#include "core/model/transformer.h"
#include "experts/options.h"

namespace moxie {

// safetensors' dtype for a torch dtype (std::runtime_error naming one it has
// none for), and back.
safetensors::DType safetensors_dtype(torch::ScalarType t);
torch::ScalarType torch_dtype(safetensors::DType t);

// One tensor of a safetensors file as a fresh torch tensor of its own dtype.
// Copied with memcpy: tensor data in the format is not aligned to its dtype.
torch::Tensor read_safetensor(const safetensors::Reader& reader, const std::string& name);

// The model's tensors under the class's Hugging Face names (experts split per
// expert, the classic layout both classes' checkpoints use). Views of the
// live parameters (or, with `grads`, of their gradients, which must be
// defined); nothing is copied.
std::map<std::string, torch::Tensor> to_hf_state(CausalLM& model, bool grads = false,
                                                 HfArch arch = HfArch::kMixtral);

// Copies weights with Hugging Face names into the model, converting dtype,
// from one safetensors file or a folder (model.safetensors, or the files of
// model.safetensors.index.json). Every model tensor must be present with the
// right shape, and every tensor in the files must be used; otherwise one
// error names the path and the tensors at fault.
void load_hf_safetensors(CausalLM& model, const std::string& path, HfArch arch = HfArch::kMixtral);

// Writes the model's weights with Hugging Face names (float32 or the
// parameters' dtype) to one file.
void save_hf_safetensors(CausalLM& model, const std::string& path, HfArch arch = HfArch::kMixtral);

// The model's LoRA adapters in the layout of Hugging Face peft
// (adapter_config.json, adapter_model.safetensors with
// base_model.model.<module>.lora_A/B.weight) for the class's transformers-5
// module names: linear layers as target_modules, routers as
// target_parameters ("mlp.gate.weight"). PeftModel.from_pretrained(base,
// dir) then gives the adapted model. Throws for adapters peft's layout here
// does not cover (routed experts: export them merged).
void write_peft_adapters(CausalLM& model, const LoraOptions& lora,
                         const std::string& base_model_path, const std::string& dir);

// The class's config.json for these options. Throws std::runtime_error naming
// what the class cannot express (and the option that sets it).
void write_hf_config(const ModelOptions& model, const MoEOptions& moe, HfArch arch,
                     const std::string& path);

}  // namespace moxie
