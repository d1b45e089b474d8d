// Hugging Face interchange: Mixtral and Qwen2-MoE.
#include "core/checkpoint/hf_interop.h"

#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/checkpoint/safetensors.h"
#include "core/common/file_io.h"

namespace moxie {
namespace {

namespace st = safetensors;

// Writes named tensors (contiguous copies where needed) to one file.
void write_named(const std::string& path, const std::map<std::string, torch::Tensor>& tensors) {
  std::vector<torch::Tensor> keep;  // contiguous copies outlive the views
  std::vector<st::TensorView> views;
  for (const auto& [name, t] : tensors) {
    keep.push_back(t.detach().contiguous());
    const auto& c = keep.back();
    views.push_back({name, safetensors_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr(),
                     static_cast<uint64_t>(c.nbytes())});
  }
  st::write(path, views, {{"format", "pt"}});
}

// A JSON file written whole or not at all (OutputFile); std::runtime_error
// naming the file and the system's reason.
void write_json(const std::string& path, const nlohmann::json& j, const std::string& what) {
  try {
    write_file_atomically(path, j.dump(2) + "\n", what);
  } catch (const FileError& e) {
    throw std::runtime_error(e.what());
  }
}

}  // namespace

st::DType safetensors_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat:
      return st::DType::F32;
    case torch::kDouble:
      return st::DType::F64;
    case torch::kBFloat16:
      return st::DType::BF16;
    case torch::kHalf:
      return st::DType::F16;
    case torch::kLong:
      return st::DType::I64;
    case torch::kInt:
      return st::DType::I32;
    case torch::kByte:
      return st::DType::U8;
    default:
      throw std::runtime_error(std::string("no safetensors dtype for a tensor of type ") +
                               c10::toString(t));
  }
}

torch::ScalarType torch_dtype(st::DType t) {
  switch (t) {
    case st::DType::F32:
      return torch::kFloat;
    case st::DType::F64:
      return torch::kDouble;
    case st::DType::BF16:
      return torch::kBFloat16;
    case st::DType::F16:
      return torch::kHalf;
    case st::DType::I64:
      return torch::kLong;
    case st::DType::I32:
      return torch::kInt;
    case st::DType::I16:
      return torch::kShort;
    case st::DType::I8:
      return torch::kChar;
    case st::DType::U8:
      return torch::kByte;
    case st::DType::BOOL:
      return torch::kBool;
  }
  throw std::runtime_error("unknown safetensors dtype");
}

torch::Tensor read_safetensor(const safetensors::Reader& reader, const std::string& name) {
  const auto& info = reader.at(name);
  auto out = torch::empty(info.shape, torch::TensorOptions().dtype(torch_dtype(info.dtype)));
  if (info.nbytes > 0) std::memcpy(out.data_ptr(), reader.data(info), info.nbytes);
  return out;
}

std::map<std::string, torch::Tensor> to_hf_state(CausalLM& model, bool grads, HfArch arch) {
  if (model->tensor_parallel().on()) {
    throw std::runtime_error(
        "to_hf_state: this model is split over " + std::to_string(model->tensor_parallel().size()) +
        " tensor-parallel ranks; Hugging Face export needs the whole model (parallel.tp=1)");
  }
  const std::string moe_block = arch == HfArch::kMixtral ? ".block_sparse_moe." : ".mlp.";
  std::map<std::string, torch::Tensor> state;
  const auto specs = model->param_specs();
  const auto params = model->named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    std::string name = params[i].key();
    if (specs[i].adapter) continue;  // adapters: merge them, or write_peft_adapters()
    const torch::Tensor w = grads ? params[i].value().grad() : params[i].value();
    if (!w.defined()) throw std::runtime_error("to_hf_state: " + name + " has no gradient");
    if (const auto b = name.find(".block_sparse_moe."); b != std::string::npos) {
      name.replace(b, std::string(".block_sparse_moe.").size(), moe_block);
    }
    if (specs[i].role != ParamRole::kExpert) {
      state[name] = w;
      continue;
    }
    // Stacked experts ("...experts.w13" [E, 2H, D]) become one tensor per expert.
    const auto pos = name.rfind("experts.");
    const std::string prefix = name.substr(0, pos) + "experts.";
    const std::string which = name.substr(prefix.size());
    const bool mixtral = arch == HfArch::kMixtral;
    for (int64_t e = 0; e < w.size(0); ++e) {
      const std::string base = prefix + std::to_string(e) + ".";
      if (which == "w13") {
        const int64_t H = w.size(1) / 2;
        state[base + (mixtral ? "w1" : "gate_proj") + ".weight"] = w[e].narrow(0, 0, H);
        state[base + (mixtral ? "w3" : "up_proj") + ".weight"] = w[e].narrow(0, H, H);
      } else {
        state[base + (mixtral ? "w2" : "down_proj") + ".weight"] = w[e];
      }
    }
  }
  if (model->model_options().tie_embeddings) state.erase("lm_head.weight");
  return state;
}

void load_hf_safetensors(CausalLM& model, const std::string& path, HfArch arch) {
  std::vector<std::unique_ptr<st::Reader>> readers;
  std::map<std::string, std::pair<const st::Reader*, const st::TensorInfo*>> found;
  for (const auto& file : hf_weight_files(path)) {
    readers.push_back(std::make_unique<st::Reader>(file));
    for (const auto& t : readers.back()->tensors()) found[t.name] = {readers.back().get(), &t};
  }
  auto state = to_hf_state(model, false, arch);
  std::set<std::string> unused;
  for (const auto& [name, _] : found) unused.insert(name);

  std::vector<std::string> missing, mismatched;
  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : state) {
    const auto it = found.find(name);
    if (it == found.end()) {
      missing.push_back(name);
      continue;
    }
    unused.erase(name);
    const auto* info = it->second.second;
    if (std::vector<int64_t>(dst.sizes().begin(), dst.sizes().end()) != info->shape) {
      std::ostringstream msg;
      msg << name << " (file " << c10::IntArrayRef(info->shape) << ", model " << dst.sizes() << ")";
      mismatched.push_back(msg.str());
      continue;
    }
    dst.copy_(read_safetensor(*it->second.first, name));
  }
  auto list = [](const auto& names) {
    std::string s;
    size_t shown = 0;
    for (const auto& n : names) {
      if (shown++ == 5) return s + ", ...";
      s += (s.empty() ? "" : ", ") + n;
    }
    return s;
  };
  if (!missing.empty() || !mismatched.empty() || !unused.empty()) {
    std::string msg = "cannot load " + path + " into this model:";
    if (!missing.empty())
      msg += " " + std::to_string(missing.size()) + " tensors missing (" + list(missing) + ");";
    if (!mismatched.empty()) msg += " shape mismatch for " + list(mismatched) + ";";
    if (!unused.empty())
      msg +=
          " " + std::to_string(unused.size()) + " tensors not in the model (" + list(unused) + ");";
    throw std::runtime_error(msg + " check that the config matches the checkpoint");
  }
}

void save_hf_safetensors(CausalLM& model, const std::string& path, HfArch arch) {
  write_named(path, to_hf_state(model, false, arch));
}

void write_peft_adapters(CausalLM& model, const LoraOptions& lora,
                         const std::string& base_model_path, const std::string& dir) {
  if (model->tensor_parallel().on())
    throw std::runtime_error("write_peft_adapters needs the whole model (parallel.tp=1)");
  // transformers 5 names the MoE block "mlp" at run time in both classes.
  auto hf_module = [](std::string name) {
    if (const auto b = name.find(".block_sparse_moe."); b != std::string::npos) {
      name.replace(b, std::string(".block_sparse_moe.").size(), ".mlp.");
    }
    return name;
  };
  std::map<std::string, torch::Tensor> tensors;
  nlohmann::json modules = nlohmann::json::array();
  bool router = false;
  const auto specs = model->param_specs();
  const auto params = model->named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!specs[i].adapter) continue;
    if (specs[i].role == ParamRole::kExpert) {
      throw std::runtime_error(
          "the routed experts' adapters (lora.targets: experts) have no peft layout here; "
          "export them folded into the weights with --merge-lora");
    }
    // "<module>.lora_A" -> peft's "base_model.model.<module>.lora_A.weight".
    const std::string& name = params[i].key();
    const auto at = name.rfind(".lora_");
    std::string module = hf_module(name.substr(0, at));
    const std::string factor = name.substr(at + 6);  // "A" or "B"
    tensors["base_model.model." + module + ".lora_" + factor + ".weight"] = params[i].value();
    if (specs[i].role == ParamRole::kRouter) {
      router = true;
    } else if (factor == "A") {
      modules.push_back(module);
    }
  }
  if (tensors.empty())
    throw std::runtime_error("this model has no LoRA adapters to write (lora.rank is 0)");
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  write_named((fs::path(dir) / "adapter_model.safetensors").string(), tensors);
  nlohmann::json c = {{"peft_type", "LORA"},
                      {"task_type", "CAUSAL_LM"},
                      {"base_model_name_or_path", base_model_path},
                      {"r", lora.rank},
                      {"lora_alpha", lora.alpha},
                      {"lora_dropout", lora.dropout},
                      {"target_modules", modules},
                      {"bias", "none"},
                      {"fan_in_fan_out", false},
                      {"use_rslora", false},
                      {"use_dora", false},
                      {"init_lora_weights", true},
                      {"inference_mode", true}};
  if (router) c["target_parameters"] = {"mlp.gate.weight"};
  write_json((fs::path(dir) / "adapter_config.json").string(), c, "peft adapter config");
}

void write_hf_config(const ModelOptions& m, const MoEOptions& e, HfArch arch,
                     const std::string& path) {
  const std::string cls = hf_class_name(arch);
  auto refuse = [&](bool bad, const std::string& what) {
    if (bad) throw std::runtime_error("cannot export as " + cls + ": " + what);
  };
  refuse(e.score_func != ScoreFunc::kSoftmax, "it routes by softmax (moe.score_func)");
  refuse(e.bias_update_rate != 0, "it has no balancing bias (moe.bias_update_rate)");
  refuse(e.capacity_factor != 0, "it is dropless (moe.capacity_factor)");
  refuse(m.image_patch_dim != 0 || m.audio_frame != 0,
         "the image and audio encoders have no counterpart in it");
  nlohmann::json j = {
      {"architectures", {cls}},
      {"vocab_size", m.vocab_size},
      {"hidden_size", m.d_model},
      {"num_hidden_layers", m.n_layers},
      {"num_attention_heads", m.n_heads},
      {"num_key_value_heads", m.n_kv_heads},
      {"head_dim", head_dim_of(m)},
      {"max_position_embeddings", m.max_seq_len},
      {"rms_norm_eps", m.norm_eps},
      {"rope_theta", m.rope_theta},
      {"num_experts_per_tok", e.top_k},
      {"router_aux_loss_coef", e.aux_loss_coef},
      {"output_router_logits", false},
      {"tie_word_embeddings", m.tie_embeddings},
      {"hidden_act", "silu"},
      {"attention_dropout", 0.0},
      {"initializer_range", m.init_std},
      {"torch_dtype", "float32"},
      {"use_cache", true},
  };
  if (arch == HfArch::kMixtral) {
    refuse(m.first_k_dense != 0 || m.moe_every != 1,
           "it has an MoE FFN in every layer (model.first_k_dense, model.moe_every); "
           "Qwen2MoeForCausalLM has dense layers");
    refuse(e.num_shared_experts != 0,
           "it has no shared experts (moe.num_shared_experts); Qwen2MoeForCausalLM has them");
    refuse(!e.renormalize,
           "it renormalises the top-k weights (moe.renormalize); Qwen2MoeForCausalLM need not");
    refuse(m.qkv_bias, "it has no q/k/v biases (model.qkv_bias); Qwen2MoeForCausalLM has them");
    j["model_type"] = "mixtral";
    j["intermediate_size"] = e.expert_hidden;
    j["num_local_experts"] = e.num_experts;
    j["sliding_window"] = nullptr;
  } else {
    refuse(e.num_shared_experts == 0,
           "every sparse layer has a shared expert (moe.num_shared_experts=0)");
    nlohmann::json dense = nlohmann::json::array();
    for (int64_t i = 0; i < m.n_layers; ++i) {
      if (i < m.first_k_dense || (i - m.first_k_dense) % m.moe_every != 0) dense.push_back(i);
    }
    j["model_type"] = "qwen2_moe";
    j["intermediate_size"] = m.ffn_hidden;
    j["moe_intermediate_size"] = e.expert_hidden;
    j["shared_expert_intermediate_size"] = e.shared_expert_hidden > 0
                                               ? e.shared_expert_hidden
                                               : e.expert_hidden * e.num_shared_experts;
    j["num_experts"] = e.num_experts;
    j["norm_topk_prob"] = e.renormalize;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = dense;
    j["qkv_bias"] = m.qkv_bias;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
  }
  write_json(path, j, "Hugging Face config");
}

}  // namespace moxie
