// Low-rank adapters on a CausalLM: the layers lora.targets names get one,
// walked layer by layer in the order the modules were registered (each
// adapter's A draws from the global generator, so the order fixes the values).
#include <map>
#include <stdexcept>
#include <string>

#include "core/model/transformer.h"

namespace moxie {
namespace {

// Which targets matched, and the adapters added so far.
class LoraTargets {
 public:
  explicit LoraTargets(const LoraOptions& lora) : lora_(lora) {
    for (const auto& t : lora.targets) hits_[t] = 0;
  }

  // A linear layer at `path` ("model.layers.0.self_attn.q_proj") takes an
  // adapter when a target is its name or a part of its path; the first
  // such target (in name order) counts the hit.
  void linear(const std::string& path, ParallelLinearImpl& layer) {
    const std::string dotted = "." + path + ".";
    for (auto& [target, n] : hits_) {
      if (target == "router" || target.rfind("experts", 0) == 0) continue;
      if (dotted.find("." + target + ".") == std::string::npos) continue;
      layer.add_lora(lora_.rank, lora_.alpha, lora_.dropout);
      ++n;
      ++adapted_;
      return;
    }
  }
  void router(RouterImpl& r) {
    if (!wants("router")) return;
    r.add_lora(lora_.rank, lora_.alpha);
    ++hits_["router"];
    ++adapted_;
  }
  void experts(ExpertsImpl& e) {
    const bool w13 = wants("experts") || wants("experts.w13");
    const bool w2 = wants("experts") || wants("experts.w2");
    if (!w13 && !w2) return;
    e.add_lora(w13, w2, lora_.rank, lora_.alpha);
    for (const char* t : {"experts", "experts.w13", "experts.w2"})
      if (wants(t)) ++hits_[t];
    adapted_ += int64_t{w13} + int64_t{w2};
  }
  void swiglu(const std::string& path, SwiGLUImpl& mlp) {
    linear(path + ".gate_proj", *mlp.gate_proj);
    linear(path + ".up_proj", *mlp.up_proj);
    linear(path + ".down_proj", *mlp.down_proj);
  }

  // Throws naming a target that matched nothing; else the adapters added.
  int64_t finish() const {
    for (const auto& [target, n] : hits_) {
      if (n == 0) {
        throw std::runtime_error(
            "lora.targets: '" + target +
            "' matches no layer of this model (linear layers: "
            "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head, or a path "
            "part such as self_attn or shared_expert; also router, experts, experts.w13, "
            "experts.w2)");
      }
    }
    return adapted_;
  }

 private:
  bool wants(const std::string& target) const { return hits_.count(target) > 0; }

  const LoraOptions& lora_;
  std::map<std::string, int64_t> hits_;
  int64_t adapted_ = 0;
};

void merge(SwiGLUImpl& mlp) {
  mlp.gate_proj->merge_lora();
  mlp.up_proj->merge_lora();
  mlp.down_proj->merge_lora();
}

}  // namespace

int64_t CausalLMImpl::add_lora(const LoraOptions& lora) {
  LoraTargets targets(lora);
  size_t i = 0;
  for (const auto& layer : *model->layers) {
    auto& block = *layer->as<BlockImpl>();
    const std::string path = "model.layers." + std::to_string(i++);
    auto& attn = *block.self_attn;
    targets.linear(path + ".self_attn.q_proj", *attn.q_proj);
    targets.linear(path + ".self_attn.k_proj", *attn.k_proj);
    targets.linear(path + ".self_attn.v_proj", *attn.v_proj);
    targets.linear(path + ".self_attn.o_proj", *attn.o_proj);
    if (block.block_sparse_moe) {
      auto& moe = *block.block_sparse_moe;
      targets.router(*moe.gate);
      targets.experts(*moe.experts);
      if (moe.shared_expert)
        targets.swiglu(path + ".block_sparse_moe.shared_expert", *moe.shared_expert);
    } else {
      targets.swiglu(path + ".mlp", *block.mlp);
    }
  }
  if (lm_head) targets.linear("lm_head", *lm_head);
  return targets.finish();
}

void CausalLMImpl::merge_lora() {
  for (const auto& layer : *model->layers) {
    auto& block = *layer->as<BlockImpl>();
    auto& attn = *block.self_attn;
    for (auto* proj : {&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.o_proj})
      (*proj)->merge_lora();
    if (block.block_sparse_moe) {
      auto& moe = *block.block_sparse_moe;
      moe.gate->merge_lora();
      moe.experts->merge_lora();
      if (moe.shared_expert) merge(*moe.shared_expert);
    } else {
      merge(*block.mlp);
    }
  }
  if (lm_head) lm_head->merge_lora();
}

}  // namespace moxie
