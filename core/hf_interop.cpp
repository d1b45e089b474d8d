// Hugging Face Mixtral interchange.
#include "core/hf_interop.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/safetensors.h"

namespace moxie {
namespace {

namespace st = safetensors;

const std::string kExpertsSuffix = ".block_sparse_moe.experts";

st::DType to_st_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return st::DType::F32;
    case torch::kDouble: return st::DType::F64;
    case torch::kBFloat16: return st::DType::BF16;
    case torch::kHalf: return st::DType::F16;
    case torch::kLong: return st::DType::I64;
    case torch::kInt: return st::DType::I32;
    default: throw std::runtime_error(std::string("no safetensors dtype for ") + c10::toString(t));
  }
}

torch::ScalarType to_torch_dtype(st::DType t) {
  switch (t) {
    case st::DType::F32: return torch::kFloat;
    case st::DType::F64: return torch::kDouble;
    case st::DType::BF16: return torch::kBFloat16;
    case st::DType::F16: return torch::kHalf;
    case st::DType::I64: return torch::kLong;
    case st::DType::I32: return torch::kInt;
    case st::DType::I16: return torch::kShort;
    case st::DType::I8: return torch::kChar;
    case st::DType::U8: return torch::kByte;
    case st::DType::BOOL: return torch::kBool;
  }
  throw std::runtime_error("unknown safetensors dtype");
}

}  // namespace

torch::Tensor read_safetensor(const safetensors::Reader& reader, const std::string& name) {
  const auto& info = reader.at(name);
  auto out = torch::empty(info.shape, torch::TensorOptions().dtype(to_torch_dtype(info.dtype)));
  if (info.nbytes > 0) std::memcpy(out.data_ptr(), reader.data(info), info.nbytes);
  return out;
}

HfModelConfig read_hf_mixtral_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open Hugging Face config " + path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw std::runtime_error(path + " is not valid JSON: " + e.what());
  }
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key) || j[key].is_null()) {
      throw std::runtime_error(path + ": missing key '" + key + "' for a Mixtral config");
    }
    return j[key];
  };
  if (j.contains("sliding_window") && !j["sliding_window"].is_null()) {
    throw std::runtime_error(path + ": sliding_window attention is not supported; set it to null");
  }
  HfModelConfig c;
  c.model.vocab_size = need("vocab_size").get<int64_t>();
  c.model.d_model = need("hidden_size").get<int64_t>();
  c.model.n_layers = need("num_hidden_layers").get<int64_t>();
  c.model.n_heads = need("num_attention_heads").get<int64_t>();
  c.model.n_kv_heads = need("num_key_value_heads").get<int64_t>();
  if (j.contains("head_dim") && !j["head_dim"].is_null()) c.model.head_dim = j["head_dim"].get<int64_t>();
  c.model.max_seq_len = need("max_position_embeddings").get<int64_t>();
  c.model.norm_eps = need("rms_norm_eps").get<double>();
  c.model.tie_embeddings = j.value("tie_word_embeddings", false);
  // transformers 5 nests rope_theta in rope_parameters; 4.x had it at top level.
  if (j.contains("rope_parameters") && j["rope_parameters"].contains("rope_theta")) {
    c.model.rope_theta = j["rope_parameters"]["rope_theta"].get<double>();
  } else {
    c.model.rope_theta = need("rope_theta").get<double>();
  }
  c.model.first_k_dense = 0;
  c.model.moe_every = 1;
  c.moe.num_experts = need("num_local_experts").get<int64_t>();
  c.moe.top_k = need("num_experts_per_tok").get<int64_t>();
  c.moe.expert_hidden = need("intermediate_size").get<int64_t>();
  c.moe.score_func = "softmax";
  c.moe.renormalize = true;
  c.moe.aux_loss_coef = j.value("router_aux_loss_coef", 0.0);
  c.moe.capacity_factor = 0.0;
  return c;
}

std::map<std::string, torch::Tensor> to_hf_state(CausalLM& model, bool grads) {
  if (model->tensor_parallel().on()) {
    throw std::runtime_error(
        "to_hf_state: this model is split over " + std::to_string(model->tensor_parallel().size()) +
        " tensor-parallel ranks; Hugging Face export needs the whole model (parallel.tp=1)");
  }
  std::map<std::string, torch::Tensor> state;
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor w = grads ? item.value().grad() : item.value();
    if (!w.defined()) throw std::runtime_error("to_hf_state: " + name + " has no gradient");
    const auto pos = name.find(kExpertsSuffix + ".");
    if (pos == std::string::npos) {
      state[name] = w;
      continue;
    }
    const std::string prefix = name.substr(0, pos + kExpertsSuffix.size());
    const std::string which = name.substr(pos + kExpertsSuffix.size() + 1);
    for (int64_t e = 0; e < w.size(0); ++e) {
      const std::string base = prefix + "." + std::to_string(e) + ".";
      if (which == "w13") {
        const int64_t H = w.size(1) / 2;
        state[base + "w1.weight"] = w[e].narrow(0, 0, H);
        state[base + "w3.weight"] = w[e].narrow(0, H, H);
      } else {
        state[base + which + ".weight"] = w[e];
      }
    }
  }
  if (model->model_options().tie_embeddings) state.erase("lm_head.weight");
  return state;
}

void load_hf_safetensors(CausalLM& model, const std::string& path) {
  st::Reader reader(path);
  auto state = to_hf_state(model);
  std::set<std::string> unused;
  for (const auto& t : reader.tensors()) unused.insert(t.name);

  std::vector<std::string> missing, mismatched;
  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : state) {
    const auto* info = reader.find(name);
    if (!info) {
      missing.push_back(name);
      continue;
    }
    unused.erase(name);
    if (std::vector<int64_t>(dst.sizes().begin(), dst.sizes().end()) != info->shape) {
      std::ostringstream msg;
      msg << name << " (file " << c10::IntArrayRef(info->shape) << ", model " << dst.sizes() << ")";
      mismatched.push_back(msg.str());
      continue;
    }
    dst.copy_(read_safetensor(reader, name));
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
    if (!missing.empty()) msg += " " + std::to_string(missing.size()) + " tensors missing (" + list(missing) + ");";
    if (!mismatched.empty()) msg += " shape mismatch for " + list(mismatched) + ";";
    if (!unused.empty()) msg += " " + std::to_string(unused.size()) + " tensors not in the model (" + list(unused) + ");";
    throw std::runtime_error(msg + " check that the config matches the checkpoint");
  }
}

void save_hf_safetensors(CausalLM& model, const std::string& path) {
  auto state = to_hf_state(model);
  std::vector<torch::Tensor> keep;  // contiguous copies outlive the views
  std::vector<st::TensorView> views;
  for (auto& [name, t] : state) {
    keep.push_back(t.detach().contiguous());
    const auto& c = keep.back();
    views.push_back({name, to_st_dtype(c.scalar_type()),
                     std::vector<int64_t>(c.sizes().begin(), c.sizes().end()), c.data_ptr(),
                     static_cast<uint64_t>(c.nbytes())});
  }
  st::write(path, views, {{"format", "pt"}});
}

void write_hf_mixtral_config(const ModelOptions& m, const MoEOptions& e, const std::string& path) {
  auto refuse = [](bool bad, const std::string& what) {
    if (bad) throw std::runtime_error("cannot export as MixtralForCausalLM: " + what);
  };
  refuse(m.first_k_dense != 0 || m.moe_every != 1, "Mixtral has an MoE FFN in every layer (model.first_k_dense, model.moe_every)");
  refuse(e.num_shared_experts != 0, "Mixtral has no shared experts (moe.num_shared_experts)");
  refuse(e.score_func != "softmax" || !e.renormalize, "Mixtral routes by softmax with renormalised top-k weights");
  refuse(e.bias_update_rate != 0, "Mixtral has no balancing bias (moe.bias_update_rate)");
  refuse(e.capacity_factor != 0, "Mixtral is dropless (moe.capacity_factor)");
  refuse(m.image_patch_dim != 0 || m.audio_frame != 0, "the image and audio encoders have no Mixtral counterpart");
  nlohmann::json j = {
      {"architectures", {"MixtralForCausalLM"}},
      {"model_type", "mixtral"},
      {"vocab_size", m.vocab_size},
      {"hidden_size", m.d_model},
      {"intermediate_size", e.expert_hidden},
      {"num_hidden_layers", m.n_layers},
      {"num_attention_heads", m.n_heads},
      {"num_key_value_heads", m.n_kv_heads},
      {"head_dim", head_dim_of(m)},
      {"max_position_embeddings", m.max_seq_len},
      {"rms_norm_eps", m.norm_eps},
      {"rope_theta", m.rope_theta},
      {"num_local_experts", e.num_experts},
      {"num_experts_per_tok", e.top_k},
      {"router_aux_loss_coef", e.aux_loss_coef},
      {"output_router_logits", false},
      {"tie_word_embeddings", m.tie_embeddings},
      {"sliding_window", nullptr},
      {"hidden_act", "silu"},
      {"attention_dropout", 0.0},
      {"initializer_range", m.init_std},
      {"torch_dtype", "float32"},
      {"use_cache", true},
  };
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace moxie
