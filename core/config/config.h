// A run's configuration: the components' option structs composed, read from
// YAML, overridden from the command line, validated once, written back out.
// Torch-free, so the command line checks a config without loading LibTorch.
#pragma once

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
