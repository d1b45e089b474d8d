// Config: YAML text and --set overrides -> the option structs, each value
// converted by its field's type (core/config_schema.h lists the keys), every
// mistake reported against the file's line or the override that made it.
#include "core/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <type_traits>

#include "core/common/file_io.h"
#include "core/config/config_schema.h"

namespace moxie {
namespace {

using schema::fields;
using schema::sections;

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
  // A folder, FIFO or device is refused by name (an ifstream of a folder
  // reads as empty: all defaults, silently).
  std::string text;
  try {
    text = read_small_file(path, "config", kMaxConfigBytes);
  } catch (const FileError& e) {
    throw ConfigError(std::string(e.what()) + " (e.g. configs/tiny.yaml)");
  }
  Config c = parse_config(text, overrides, path);
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

}  // namespace moxie
