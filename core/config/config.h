// A run's configuration: the components' option structs composed, read from
// YAML, overridden from the command line, validated once, written back out.
// Torch-free, so the command line checks a config without loading LibTorch.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/config/run_options.h"
#include "core/model/options.h"
#include "data/options.h"
#include "experts/options.h"
#include "optim/options.h"
#include "parallel/options.h"

namespace moxie {

struct Config {
  ModelOptions model;
  MoEOptions moe;
  OptimOptions optim;
  ScheduleOptions schedule;
  DataOptions data;
  TrainOptions train;
  ParallelOptions parallel;
  FinetuneOptions finetune;
  LoraOptions lora;
};

// One sentence naming the source, the full key path and what would be valid.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A config file larger than this is refused before it is read.
constexpr uint64_t kMaxConfigBytes = uint64_t{16} << 20;

// The most each value that sizes threads, buffers or tensors may be, checked
// by validate(): sizes no machine could hold, whose products would overflow
// the 64-bit element counts of the tensors they shape.
namespace limits {
constexpr int64_t kWidth = int64_t{1} << 17;    // d_model, head_dim, ffn/expert hidden
constexpr int64_t kVocab = int64_t{1} << 24;    // model.vocab_size
constexpr int64_t kLayers = 4096;               // model.n_layers
constexpr int64_t kHeads = 4096;                // model.n_heads, n_kv_heads
constexpr int64_t kSeqLen = int64_t{1} << 22;   // model.max_seq_len, data.seq_len
constexpr int64_t kExperts = int64_t{1} << 16;  // moe.num_experts
constexpr int64_t kSharedExperts = 256;         // moe.num_shared_experts
constexpr int64_t kBatch = int64_t{1} << 20;    // micro_batch_size, grad_accum, eval_batches
constexpr int64_t kTokensPerMicroBatch = int64_t{1} << 31;  // micro_batch_size * seq_len
constexpr int64_t kThreads = 1024;                          // train.threads, per process
constexpr int64_t kRanks = int64_t{1} << 24;                // parallel.dp, tp, ep, pp
constexpr int64_t kShuffleBlock = int64_t{1} << 30;         // data.shuffle_block
}  // namespace limits

// Reads a YAML file, applies overrides ("section.key=value", the value parsed
// as YAML, so lists work: "data.extensions=[.txt,.md]"), converts, validates.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from YAML text; source_name appears in error messages.
Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                    const std::string& source_name = "<config>");
// Throws ConfigError for impossible values and combinations.
void validate(const Config& config);
// Every key of every section, in a stable order; parse_config reads it back
// into an equal Config. Strings another YAML reader would take for a bool,
// a number or null are quoted, so Python tools read the same types.
std::string to_yaml(const Config& config);

// Equal when every key has the same value, as to_yaml writes it (doubles
// exactly: to_yaml writes the shortest text that reads back bit-for-bit).
bool operator==(const Config& a, const Config& b);
inline bool operator!=(const Config& a, const Config& b) { return !(a == b); }

}  // namespace moxie
