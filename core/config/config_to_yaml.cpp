// Config -> YAML text: every key of every section, doubles written so that
// they read back bit for bit, strings quoted where another YAML reader would
// take them for something else.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "core/config/config.h"
#include "core/config/config_schema.h"

namespace moxie {

namespace schema {

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

}  // namespace schema

namespace {

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
    out << YAML::Key << key << YAML::Value << schema::format_double(v);
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

}  // namespace

std::string to_yaml(const Config& config) {
  Config c = config;  // fields() takes non-const references
  YAML::Emitter out;
  out << YAML::BeginMap;
  schema::sections(c, [&](const char* name, auto& options) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    schema::fields(options, Emitter{out});
    out << YAML::EndMap;
  });
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

bool operator==(const Config& a, const Config& b) { return to_yaml(a) == to_yaml(b); }

}  // namespace moxie
