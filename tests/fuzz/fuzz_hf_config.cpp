// libFuzzer target: arbitrary bytes as a Hugging Face config.json or
// model.safetensors.index.json. Parsing must end in a std::runtime_error
// naming the file (never a JSON library's exception escaping, a crash or a
// hang) or options inside the parser's stated bounds (AddressSanitizer and
// UBSan). The first byte chooses which file the rest is. Started on an empty
// corpus folder, it first writes the config.json files transformers 5 writes
// for a small Mixtral and Qwen2-MoE, and an index, as the seeds.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "core/checkpoint/hf_config.h"
#include "core/common/file_io.h"

namespace fs = std::filesystem;

namespace {

// MixtralConfig(...).to_dict() and Qwen2MoeConfig(...).to_dict() of
// transformers 5.23, as save_pretrained writes them (keys sorted).
const char* kMixtral =
    R"({"_name_or_path": "", "architectures": null, "attention_dropout": 0.0, "bos_token_id": 1, )"
    R"("chunk_size_feed_forward": 0, "dtype": null, "eos_token_id": 2, "head_dim": null, )"
    R"("hidden_act": "silu", "hidden_size": 64, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, )"
    R"("initializer_range": 0.02, "intermediate_size": 48, "is_encoder_decoder": false, )"
    R"("label2id": {"LABEL_0": 0, "LABEL_1": 1}, "max_position_embeddings": 64, )"
    R"("model_type": "mixtral", "num_attention_heads": 4, "num_experts_per_tok": 2, )"
    R"("num_hidden_layers": 2, "num_key_value_heads": 2, "num_local_experts": 4, )"
    R"("output_attentions": false, "output_hidden_states": false, "output_router_logits": false, )"
    R"("pad_token_id": null, "problem_type": null, "return_dict": true, "rms_norm_eps": 1e-05, )"
    R"("rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, )"
    R"("router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0, "sliding_window": null, )"
    R"("tie_word_embeddings": false, "transformers_version": "5.23.0", "use_cache": true, )"
    R"("vocab_size": 260})";
const char* kQwen =
    R"({"_name_or_path": "", "architectures": null, "attention_dropout": 0.0, "bos_token_id": null, )"
    R"("chunk_size_feed_forward": 0, "decoder_sparse_step": 2, "dtype": null, "eos_token_id": null, )"
    R"("hidden_act": "silu", "hidden_size": 64, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, )"
    R"("initializer_range": 0.02, "intermediate_size": 96, "is_encoder_decoder": false, )"
    R"("label2id": {"LABEL_0": 0, "LABEL_1": 1}, "layer_types": ["full_attention", )"
    R"("full_attention", "full_attention", "full_attention"], "max_position_embeddings": 128, )"
    R"("max_window_layers": 28, "mlp_only_layers": [0], "model_type": "qwen2_moe", )"
    R"("moe_intermediate_size": 32, "norm_topk_prob": true, "num_attention_heads": 4, )"
    R"("num_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 4, )"
    R"("num_key_value_heads": 2, "output_attentions": false, "output_hidden_states": false, )"
    R"("output_router_logits": false, "pad_token_id": null, "problem_type": null, "qkv_bias": true, )"
    R"("return_dict": true, "rms_norm_eps": 1e-06, "rope_parameters": {"rope_theta": 10000.0, )"
    R"("rope_type": "default"}, "router_aux_loss_coef": 0.001, )"
    R"("shared_expert_intermediate_size": 48, "sliding_window": 0, "tie_word_embeddings": false, )"
    R"("transformers_version": "5.23.0", "use_cache": true, "use_sliding_window": false, )"
    R"("vocab_size": 260})";
const char* kIndex =
    R"({"metadata": {"total_size": 529664}, "weight_map": {"lm_head.weight": )"
    R"("model-00002-of-00002.safetensors", "model.embed_tokens.weight": )"
    R"("model-00001-of-00002.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors"}})";

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (arg.empty() || arg[0] == '-') continue;
    std::error_code ec;
    fs::create_directories(arg, ec);
    if (!fs::is_empty(arg, ec)) return 0;
    moxie::write_file_atomically(arg + "/seed-mixtral", std::string(1, '\0') + kMixtral, "seed");
    moxie::write_file_atomically(arg + "/seed-qwen2-moe", std::string(1, '\0') + kQwen, "seed");
    moxie::write_file_atomically(arg + "/seed-index", std::string(1, '\1') + kIndex, "seed");
    return 0;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 2 == 0) {
      const auto c = moxie::parse_hf_config(rest, "config.json");
      const auto& m = c.model;
      if (m.vocab_size < 1 || m.d_model < 1 || m.n_layers < 1 || m.n_kv_heads > m.n_heads ||
          c.moe.top_k > c.moe.num_experts || m.first_k_dense > m.n_layers || m.moe_every < 1)
        std::abort();
    } else {
      for (const auto& f : moxie::parse_hf_weight_map(rest, "model.safetensors.index.json"))
        if (f.size() > rest.size()) std::abort();
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
