// Config: YAML <-> option structs. Each struct's keys are listed once, in
// fields(), and every reader, writer and key list walks that list.
#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <type_traits>

namespace moxie {
namespace {

// --- the schema: one list of keys per struct ---------------------------------

template <class F>
void fields(ModelOptions& o, F&& f) {
  f("vocab_size", o.vocab_size);
  f("d_model", o.d_model);
  f("n_layers", o.n_layers);
  f("n_heads", o.n_heads);
  f("n_kv_heads", o.n_kv_heads);
  f("head_dim", o.head_dim);
  f("ffn_hidden", o.ffn_hidden);
  f("max_seq_len", o.max_seq_len);
  f("rope_theta", o.rope_theta);
  f("norm_eps", o.norm_eps);
  f("init_std", o.init_std);
  f("tie_embeddings", o.tie_embeddings);
  f("qkv_bias", o.qkv_bias);
  f("first_k_dense", o.first_k_dense);
  f("moe_every", o.moe_every);
}
template <class F>
void fields(MoEOptions& o, F&& f) {
  f("num_experts", o.num_experts);
  f("top_k", o.top_k);
  f("expert_hidden", o.expert_hidden);
  f("score_func", o.score_func);
  f("renormalize", o.renormalize);
  f("aux_loss_coef", o.aux_loss_coef);
  f("z_loss_coef", o.z_loss_coef);
  f("bias_update_rate", o.bias_update_rate);
  f("capacity_factor", o.capacity_factor);
  f("drop_policy", o.drop_policy);
  f("capacity_group", o.capacity_group);
  f("num_shared_experts", o.num_shared_experts);
  f("shared_expert_hidden", o.shared_expert_hidden);
}
template <class F>
void fields(OptimOptions& o, F&& f) {
  f("lr", o.lr);
  f("min_lr", o.min_lr);
  f("beta1", o.beta1);
  f("beta2", o.beta2);
  f("eps", o.eps);
  f("weight_decay", o.weight_decay);
  f("grad_clip", o.grad_clip);
  f("decay_embeddings", o.decay_embeddings);
}
template <class F>
void fields(ScheduleOptions& o, F&& f) {
  f("warmup_steps", o.warmup_steps);
  f("decay", o.decay);
  f("decay_steps", o.decay_steps);
}
template <class F>
void fields(DataOptions& o, F&& f) {
  f("source", o.source);
  f("path", o.path);
  f("extensions", o.extensions);
  f("tokenizer", o.tokenizer);
  f("eval_fraction", o.eval_fraction);
  f("seq_len", o.seq_len);
  f("eval_path", o.eval_path);
  f("shuffle_block", o.shuffle_block);
  f("prefetch_threads", o.prefetch_threads);
  f("prefetch_mb", o.prefetch_mb);
  f("on_corrupt", o.on_corrupt);
  f("max_skipped", o.max_skipped);
  f("verify_shards", o.verify_shards);
}
template <class F>
void fields(TrainOptions& o, F&& f) {
  f("steps", o.steps);
  f("micro_batch_size", o.micro_batch_size);
  f("grad_accum", o.grad_accum);
  f("eval_every", o.eval_every);
  f("eval_batches", o.eval_batches);
  f("log_every", o.log_every);
  f("seed", o.seed);
  f("run_dir", o.run_dir);
  f("device", o.device);
  f("dtype", o.dtype);
  f("threads", o.threads);
  f("checkpoint_every", o.checkpoint_every);
  f("keep_checkpoints", o.keep_checkpoints);
  f("stop_at", o.stop_at);
  f("resume", o.resume);
  f("max_nonfinite_steps", o.max_nonfinite_steps);
}
template <class F>
void fields(FinetuneOptions& o, F&& f) {
  f("base", o.base);
  f("freeze", o.freeze);
  f("router_lr", o.router_lr);
  f("early_stop_patience", o.early_stop_patience);
}
template <class F>
void fields(LoraOptions& o, F&& f) {
  f("rank", o.rank);
  f("alpha", o.alpha);
  f("dropout", o.dropout);
  f("targets", o.targets);
}
template <class F>
void fields(ParallelOptions& o, F&& f) {
  f("dp", o.dp);
  f("tp", o.tp);
  f("ep", o.ep);
  f("pp", o.pp);
  f("zero1", o.zero1);
  f("overlap_grad_sync", o.overlap_grad_sync);
}

template <class F>
void sections(Config& c, F&& f) {
  f("model", c.model);
  f("moe", c.moe);
  f("optim", c.optim);
  f("schedule", c.schedule);
  f("data", c.data);
  f("train", c.train);
  f("parallel", c.parallel);
  f("finetune", c.finetune);
  f("lora", c.lora);
}

// --- helpers -------------------------------------------------------------------

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// "unknown key 'model.dmodel' (did you mean 'model.d_model'?); valid keys of 'model': ..."
std::string unknown_key(const std::string& where, const std::string& prefix, const std::string& key,
                        const std::vector<std::string>& valid) {
  const std::string full = prefix.empty() ? key : prefix + "." + key;
  std::string msg = where + "unknown " + (prefix.empty() ? "section '" : "key '") + full + "'";
  std::string best;
  size_t best_d = std::max<size_t>(2, key.size() / 3) + 1;
  for (const auto& v : valid) {
    const size_t d = edit_distance(key, v);
    if (d < best_d) best_d = d, best = v;
  }
  if (!best.empty())
    msg += " (did you mean '" + (prefix.empty() ? best : prefix + "." + best) + "'?)";
  msg += prefix.empty() ? "; valid sections: " : "; valid keys of '" + prefix + "': ";
  return msg + join(valid);
}

// "tiny.yaml:3:12: " where the node came from a parsed text, else "tiny.yaml: ".
std::string at(const std::string& source, const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  if (m.is_null()) return source + ": ";
  return source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": ";
}

std::string describe(const YAML::Node& n) {
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "nothing";
  return "'" + n.Scalar() + "'";
}

// Conversion of one YAML value into one field, with the key path in errors.
struct Converter {
  std::string where;  // "configs/tiny.yaml: " or "--set a.b=c: "
  std::string key;    // full key path

  [[noreturn]] void fail(const char* expected, const YAML::Node& n) const {
    throw ConfigError(where + key + ": expected " + expected + ", got " + describe(n));
  }
  void operator()(const YAML::Node& n, int64_t& out) const {
    if (!n.IsScalar()) fail("an integer", n);
    const std::string& s = n.Scalar();
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE) fail("an integer", n);
    out = v;
  }
  void operator()(const YAML::Node& n, double& out) const {
    if (!n.IsScalar()) fail("a number", n);
    const std::string& s = n.Scalar();
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v)) fail("a finite number", n);
    out = v;
  }
  void operator()(const YAML::Node& n, bool& out) const {
    if (!n.IsScalar()) fail("true or false", n);
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "yes")
      out = true;
    else if (s == "false" || s == "False" || s == "no")
      out = false;
    else
      fail("true or false", n);
  }
  void operator()(const YAML::Node& n, std::string& out) const {
    if (!n.IsScalar()) fail("a string", n);
    out = n.Scalar();
  }
  // A choice: one of the names its enum_names() lists (the options headers).
  template <class Enum, class = std::enable_if_t<std::is_enum_v<Enum>>>
  void operator()(const YAML::Node& n, Enum& out) const {
    if (!n.IsScalar()) fail("a string", n);
    const auto names = enum_names(out);
    for (size_t i = 0; i < names.size(); ++i) {
      if (n.Scalar() == names[i]) {
        out = static_cast<Enum>(i);
        return;
      }
    }
    throw ConfigError(where + key + "='" + n.Scalar() +
                      "' is not one of: " + join({names.begin(), names.end()}));
  }
  void operator()(const YAML::Node& n, std::vector<std::string>& out) const {
    if (n.IsScalar()) {
      // The usual slip is a bare item; show the list it should have been.
      throw ConfigError(where + key + ": expected a list of strings, got " + describe(n) +
                        "; write a list, e.g. [" + n.Scalar() + "]");
    }
    if (!n.IsSequence()) fail("a list of strings", n);
    out.clear();
    for (const auto& item : n) {
      if (!item.IsScalar()) fail("a list of strings", n);
      out.push_back(item.Scalar());
    }
  }
};

// Shortest text that reads back as exactly the same double.
std::string format_double(double v) {
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // YAML 1.1 readers (PyYAML) want a dot in the mantissa: "1e-05" -> "1.0e-05".
  const auto exp = s.find_first_of("eE");
  if (s.find('.') == std::string::npos && s.find('n') == std::string::npos) {
    s.insert(exp == std::string::npos ? s.size() : exp, ".0");
  }
  return s;
}

// Whether a YAML reader (PyYAML, YAML 1.1 included) would read the plain text
// as something other than a string: such strings are written quoted, so that
// tools other than parse_config read the resolved config with the same types.
bool reads_as_non_string(const std::string& s) {
  static const char* const words[] = {
      "y",     "Y",     "yes",   "Yes",   "YES",   "n",     "N",    "no",   "No",   "NO",
      "true",  "True",  "TRUE",  "false", "False", "FALSE", "on",   "On",   "ON",   "off",
      "Off",   "OFF",   "null",  "Null",  "NULL",  "~",     "",     ".inf", ".Inf", ".INF",
      "-.inf", "-.Inf", "-.INF", "+.inf", "+.Inf", "+.INF", ".nan", ".NaN", ".NAN"};
  for (const char* w : words) {
    if (s == w) return true;
  }
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return *end == '\0';
}

struct Emitter {
  YAML::Emitter& out;
  void operator()(const char* key, int64_t v) { out << YAML::Key << key << YAML::Value << v; }
  void operator()(const char* key, double v) {
    out << YAML::Key << key << YAML::Value << format_double(v);
  }
  void operator()(const char* key, bool v) {
    out << YAML::Key << key << YAML::Value << (v ? "true" : "false");
  }
  void string(const std::string& v) {
    if (reads_as_non_string(v)) out << YAML::DoubleQuoted;
    out << v;
  }
  void operator()(const char* key, const std::string& v) {
    out << YAML::Key << key << YAML::Value;
    string(v);
  }
  // A choice: the name its enum_names() gives it (the options headers).
  template <class Enum, class = std::enable_if_t<std::is_enum_v<Enum>>>
  void operator()(const char* key, Enum v) {
    out << YAML::Key << key << YAML::Value;
    string(to_string(v));
  }
  void operator()(const char* key, const std::vector<std::string>& v) {
    out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : v) string(item);
    out << YAML::EndSeq;
  }
};

template <class Options>
std::vector<std::string> key_names(Options& o) {
  std::vector<std::string> names;
  fields(o, [&](const char* name, auto&) { names.push_back(name); });
  return names;
}

std::vector<std::string> section_names(Config& c) {
  std::vector<std::string> names;
  sections(c, [&](const char* name, auto&) { names.push_back(name); });
  return names;
}

// Key paths set by --set, mapped to the override's text, so that a bad value
// is reported against the command line rather than the file.
using OverrideSources = std::map<std::string, std::string>;

// Every key of a map (the top level when prefix is empty, else one section)
// must be a known name, written once: yaml-cpp keeps duplicates and reads the
// first, so a later line that looks like it wins would be silently ignored.
void check_keys(const YAML::Node& map, const std::string& prefix, const std::string& source,
                const std::vector<std::string>& valid) {
  std::map<std::string, int> first_line;
  for (const auto& kv : map) {
    const std::string where = at(source, kv.first);
    const std::string what = prefix.empty() ? "a section name" : "a key of '" + prefix + "'";
    if (!kv.first.IsScalar())
      throw ConfigError(where + what + " must be a plain name, got " + describe(kv.first));
    const std::string& key = kv.first.Scalar();
    if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
      throw ConfigError(unknown_key(where, prefix, key, valid));
    }
    const auto seen = first_line.emplace(key, kv.first.Mark().line + 1);
    if (!seen.second) {
      throw ConfigError(where + "'" + (prefix.empty() ? key : prefix + "." + key) +
                        "' is given twice (first on line " + std::to_string(seen.first->second) +
                        "); keep one");
    }
  }
}

template <class Options>
void read_section(const YAML::Node& node, const std::string& section, const std::string& source,
                  const OverrideSources& overridden, Options& o) {
  if (node.IsNull()) return;  // "model:" with nothing under it: all defaults
  if (!node.IsMap()) {
    throw ConfigError(at(source, node) + "section '" + section + "' must be a map of keys, got " +
                      describe(node));
  }
  check_keys(node, section, source, key_names(o));
  fields(o, [&](const char* name, auto& value) {
    const std::string key = section + "." + name;
    const YAML::Node v = node[name];
    if (!v) return;
    const auto from = overridden.find(key);
    Converter{from == overridden.end() ? at(source, v) : "--set " + from->second + ": ", key}(
        v, value);
  });
}

// Applies one "section.key=value" to the YAML tree, checking the key exists.
void apply_override(YAML::Node& root, const std::string& text, const std::string& source,
                    Config& schema, OverrideSources& overridden) {
  const std::string where = "--set " + text + ": ";
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError(where + "an override is key.path=value, e.g. --set model.d_model=256");
  }
  const std::string path = text.substr(0, eq);
  const auto dot = path.find('.');
  const std::string section = path.substr(0, dot);
  const std::string key = dot == std::string::npos ? "" : path.substr(dot + 1);
  bool found_section = false;
  sections(schema, [&](const char* name, auto& options) {
    if (section != name) return;
    found_section = true;
    const auto valid = key_names(options);
    if (key.empty())
      throw ConfigError(where + "name a key inside '" + section + "', e.g. " + section + "." +
                        valid[0]);
    if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
      throw ConfigError(unknown_key(where, section, key, valid));
    }
  });
  if (!found_section) throw ConfigError(unknown_key(where, "", section, section_names(schema)));
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(where + "the value is not valid YAML: " + e.msg);
  }
  if (value.IsNull()) throw ConfigError(where + "needs a value after '='");
  if (!root[section] || root[section].IsNull()) root[section] = YAML::Node(YAML::NodeType::Map);
  if (!root[section].IsMap()) {
    throw ConfigError(where + "cannot set a key inside section '" + section + "': " + source +
                      " gives it as " + describe(root[section]) + ", not a map of keys");
  }
  root[section][key] = value;
  overridden[path] = text;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

std::string str(double v) { return format_double(v); }
std::string str(int64_t v) { return std::to_string(v); }

void positive(const std::string& key, int64_t v) {
  require(v >= 1, key + "=" + str(v) + " must be at least 1");
}
void non_negative(const std::string& key, double v) {
  require(v >= 0, key + "=" + str(v) + " must be >= 0");
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                    const std::string& source_name) {
  const std::string where = source_name + ": ";
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    const std::string place = e.mark.is_null()
                                  ? source_name + ": "
                                  : source_name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                        std::to_string(e.mark.column + 1) + ": ";
    throw ConfigError(place + "YAML syntax error: " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);  // empty text: all defaults
  if (!root.IsMap()) {
    throw ConfigError(at(source_name, root) + "the top level must be a map of sections, got " +
                      describe(root));
  }

  Config config;
  // The file's keys are checked before overrides touch the tree, so that a
  // typo in the file is reported against the file.
  check_keys(root, "", source_name, section_names(config));
  OverrideSources overridden;
  for (const auto& o : overrides) apply_override(root, o, source_name, config, overridden);
  sections(config, [&](const char* name, auto& options) {
    if (const auto node = root[name]) read_section(node, name, source_name, overridden, options);
  });
  try {
    validate(config);
  } catch (const ConfigError& e) {
    throw ConfigError(where + e.what());
  }
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in)
    throw ConfigError("cannot read config file '" + path +
                      "'; check the path (e.g. configs/tiny.yaml)");
  std::stringstream text;
  text << in.rdbuf();
  Config c = parse_config(text.str(), overrides, path);
  if (c.finetune.base.empty()) return c;
  // Fine-tuning: the base run's config.yaml gives the model and moe sections.
  const auto base_config =
      std::filesystem::path(c.finetune.base).parent_path().parent_path() / "config.yaml";
  if (!std::filesystem::exists(base_config)) {
    throw ConfigError(
        path + ": finetune.base=" + c.finetune.base + " has no run config " + base_config.string() +
        "; name a committed checkpoint folder RUN/checkpoints/step-N (or what moxie import made)");
  }
  const Config base = load_config(base_config.string());
  auto sections_of = [](const ModelOptions& m, const MoEOptions& e) {
    Config only;
    only.model = m;
    only.moe = e;
    return to_yaml(only);
  };
  const std::string mine = sections_of(c.model, c.moe);
  if (mine != sections_of(ModelOptions{}, MoEOptions{}) &&
      mine != sections_of(base.model, base.moe)) {
    throw ConfigError(path + ": sets model or moe options, but finetune.base=" + c.finetune.base +
                      " fixes them (" + base_config.string() +
                      "); remove the model and moe sections");
  }
  c.model = base.model;
  c.moe = base.moe;
  validate(c);
  return c;
}

void validate(const Config& c) {
  const auto& m = c.model;
  for (auto [key, v] : {std::pair{"model.vocab_size", m.vocab_size},
                        {"model.d_model", m.d_model},
                        {"model.n_layers", m.n_layers},
                        {"model.n_heads", m.n_heads},
                        {"model.n_kv_heads", m.n_kv_heads},
                        {"model.ffn_hidden", m.ffn_hidden},
                        {"model.max_seq_len", m.max_seq_len},
                        {"model.moe_every", m.moe_every}}) {
    positive(key, v);
  }
  require(m.head_dim >= 0,
          "model.head_dim=" + str(m.head_dim) + " must be >= 0 (0: d_model / n_heads)");
  if (m.head_dim == 0) {
    require(m.d_model % m.n_heads == 0,
            "model.d_model=" + str(m.d_model) + " is not divisible by model.n_heads=" +
                str(m.n_heads) + "; pick d_model a multiple of n_heads or set model.head_dim");
    require((m.d_model / m.n_heads) % 2 == 0,
            "the head dimension d_model/n_heads=" + str(m.d_model / m.n_heads) +
                " must be even for rotary embeddings");
  } else {
    require(m.head_dim % 2 == 0,
            "model.head_dim=" + str(m.head_dim) + " must be even for rotary embeddings");
  }
  require(m.n_heads % m.n_kv_heads == 0,
          "model.n_heads=" + str(m.n_heads) +
              " is not divisible by model.n_kv_heads=" + str(m.n_kv_heads));
  require(m.rope_theta > 0, "model.rope_theta=" + str(m.rope_theta) + " must be > 0");
  require(m.norm_eps > 0, "model.norm_eps=" + str(m.norm_eps) + " must be > 0");
  require(m.init_std > 0, "model.init_std=" + str(m.init_std) + " must be > 0");
  require(m.first_k_dense >= 0 && m.first_k_dense <= m.n_layers,
          "model.first_k_dense=" + str(m.first_k_dense) +
              " must be between 0 and model.n_layers=" + str(m.n_layers));

  const auto& e = c.moe;
  positive("moe.num_experts", e.num_experts);
  positive("moe.expert_hidden", e.expert_hidden);
  require(
      e.top_k >= 1 && e.top_k <= e.num_experts,
      "moe.top_k=" + str(e.top_k) + " must be between 1 and moe.num_experts=" + str(e.num_experts));
  non_negative("moe.aux_loss_coef", e.aux_loss_coef);
  non_negative("moe.z_loss_coef", e.z_loss_coef);
  non_negative("moe.bias_update_rate", e.bias_update_rate);
  require(e.capacity_factor >= 0,
          "moe.capacity_factor=" + str(e.capacity_factor) + " must be 0 (dropless) or > 0");
  require(
      e.capacity_group >= 0 && (e.capacity_group == 0 || c.data.seq_len % e.capacity_group == 0),
      "moe.capacity_group=" + str(e.capacity_group) +
          " must be 0 (one sequence) or a divisor of data.seq_len=" + str(c.data.seq_len));
  require(e.num_shared_experts >= 0,
          "moe.num_shared_experts=" + str(e.num_shared_experts) + " must be >= 0");
  require(e.shared_expert_hidden >= 0,
          "moe.shared_expert_hidden=" + str(e.shared_expert_hidden) + " must be >= 0");

  const auto& o = c.optim;
  require(o.lr > 0, "optim.lr=" + str(o.lr) + " must be > 0");
  require(o.min_lr >= 0 && o.min_lr <= o.lr,
          "optim.min_lr=" + str(o.min_lr) + " must be between 0 and optim.lr=" + str(o.lr));
  require(o.beta1 >= 0 && o.beta1 < 1, "optim.beta1=" + str(o.beta1) + " must be in [0, 1)");
  require(o.beta2 >= 0 && o.beta2 < 1, "optim.beta2=" + str(o.beta2) + " must be in [0, 1)");
  require(o.eps > 0, "optim.eps=" + str(o.eps) + " must be > 0");
  non_negative("optim.weight_decay", o.weight_decay);
  require(o.grad_clip >= 0,
          "optim.grad_clip=" + str(o.grad_clip) + " must be >= 0 (0: no clipping)");

  const auto& s = c.schedule;
  require(s.warmup_steps >= 0, "schedule.warmup_steps=" + str(s.warmup_steps) + " must be >= 0");
  require(s.decay_steps >= 0,
          "schedule.decay_steps=" + str(s.decay_steps) + " must be >= 0 (0: until train.steps)");

  const auto& d = c.data;
  positive("data.shuffle_block", d.shuffle_block);
  positive("data.prefetch_mb", d.prefetch_mb);
  require(d.prefetch_threads >= 0 && d.prefetch_threads <= 64,
          "data.prefetch_threads=" + str(d.prefetch_threads) + " must be between 0 and 64");
  require(d.max_skipped >= 0, "data.max_skipped=" + str(d.max_skipped) + " must be >= 0");
  require(d.tokenizer == "byte",
          "data.tokenizer='" + d.tokenizer +
              "': the text source tokenizes bytes; for SentencePiece build a dataset with "
              "'moxie data build --tokenizer MODEL' and set data.source: dataset");
  require(!d.extensions.empty(), "data.extensions is empty; list at least one, e.g. [.txt]");
  require(d.eval_fraction > 0 && d.eval_fraction < 1,
          "data.eval_fraction=" + str(d.eval_fraction) + " must be between 0 and 1");
  positive("data.seq_len", d.seq_len);
  require(d.seq_len <= m.max_seq_len,
          "data.seq_len=" + str(d.seq_len) + " exceeds model.max_seq_len=" + str(m.max_seq_len));
  require(d.tokenizer != "byte" || m.vocab_size >= 259,
          "model.vocab_size=" + str(m.vocab_size) +
              " is smaller than the byte tokenizer's 259 ids; set it to at least 259");

  const auto& t = c.train;
  for (auto [key, v] : {std::pair{"train.steps", t.steps},
                        {"train.micro_batch_size", t.micro_batch_size},
                        {"train.grad_accum", t.grad_accum},
                        {"train.eval_batches", t.eval_batches},
                        {"train.log_every", t.log_every}}) {
    positive(key, v);
  }
  require(t.eval_every >= 0,
          "train.eval_every=" + str(t.eval_every) + " must be >= 0 (0: only at the end)");
  require(t.threads >= 0, "train.threads=" + str(t.threads) + " must be >= 0 (0: all cores)");
  require(t.checkpoint_every >= 0, "train.checkpoint_every=" + str(t.checkpoint_every) +
                                       " must be >= 0 (0: no checkpoints)");
  positive("train.keep_checkpoints", t.keep_checkpoints);
  positive("train.max_nonfinite_steps", t.max_nonfinite_steps);
  require(t.stop_at >= 0,
          "train.stop_at=" + str(t.stop_at) + " must be >= 0 (0: run to train.steps)");
  require(
      t.stop_at == 0 || t.checkpoint_every > 0,
      "train.stop_at needs train.checkpoint_every > 0 (the run saves a checkpoint to resume from)");
  require(!t.resume.empty(),
          "train.resume is empty; use auto, latest, none or a checkpoint folder");
  require(!t.run_dir.empty(), "train.run_dir is empty; name a folder for the run's outputs");

  const auto& p = c.parallel;
  for (auto [key, v] : {std::pair{"parallel.dp", p.dp},
                        {"parallel.tp", p.tp},
                        {"parallel.ep", p.ep},
                        {"parallel.pp", p.pp}}) {
    positive(key, v);
  }
  require(p.pp == 1, "parallel.pp=" + str(p.pp) +
                         ": pipeline parallelism is not implemented; set parallel.pp=1");

  const auto& f = c.finetune;
  require(f.router_lr > 0, "finetune.router_lr=" + std::to_string(f.router_lr) + " must be > 0");
  require(f.early_stop_patience >= 0, "finetune.early_stop_patience=" + str(f.early_stop_patience) +
                                          " must be >= 0 (0: never stop early)");
  require(f.early_stop_patience == 0 || t.eval_every > 0,
          "finetune.early_stop_patience needs train.eval_every > 0 (it counts evaluations)");
  for (const auto& pattern : f.freeze)
    require(!pattern.empty(), "finetune.freeze has an empty pattern");
  const auto& l = c.lora;
  require(l.rank >= 0, "lora.rank=" + str(l.rank) + " must be >= 0 (0: no adapters)");
  require(l.dropout >= 0 && l.dropout < 1,
          "lora.dropout=" + std::to_string(l.dropout) + " must be in [0, 1)");
  require(l.rank == 0 || !l.targets.empty(),
          "lora.targets is empty; name the layers to adapt, e.g. [q_proj, v_proj]");
  for (const auto& target : l.targets) require(!target.empty(), "lora.targets has an empty name");
}

std::string to_yaml(const Config& config) {
  Config c = config;  // fields() takes non-const references
  YAML::Emitter out;
  out << YAML::BeginMap;
  sections(c, [&](const char* name, auto& options) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    fields(options, Emitter{out});
    out << YAML::EndMap;
  });
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

bool operator==(const Config& a, const Config& b) { return to_yaml(a) == to_yaml(b); }

}  // namespace moxie
