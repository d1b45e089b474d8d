// metrics.jsonl: one JSON object per step and per evaluation.
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/common/file_io.h"
#include "core/train/metric_sink.h"

namespace moxie {
namespace {

// JSON has no NaN: write null so the file stays parseable.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

class JsonLinesSink : public MetricSink {
 public:
  // A link planted at the name is refused; a write that fails (a full disk)
  // is a FileError naming the file, not a run that logs nothing.
  explicit JsonLinesSink(const SinkOptions& o)
      : jsonl_(o.run_dir + "/metrics.jsonl", "metrics log", !o.append) {}

  void step(const StepMetrics& m) override {
    nlohmann::json j = {{"step", m.step},
                        {"loss", num(m.loss)},
                        {"aux_loss", num(m.aux_loss)},
                        {"balance", num(m.balance)},
                        {"grad_norm", num(m.grad_norm)},
                        {"lr", m.lr},
                        {"tokens_per_s", m.tokens_per_s},
                        {"step_time_s", m.step_time_s},
                        {"expert_load_min", m.load_min},
                        {"expert_load_max", m.load_max},
                        {"dropped_frac", m.dropped_frac},
                        {"skipped", m.skipped}};
    for (const auto& [name, value] : m.extra) j[name] = num(value);
    jsonl_.append(j.dump() + '\n');
  }

  void eval(int64_t step, double loss) override {
    jsonl_.append(nlohmann::json({{"step", step}, {"eval_loss", num(loss)}}).dump() + '\n');
  }

  void message(const std::string&) override {}

 private:
  AppendFile jsonl_;
};

}  // namespace

std::unique_ptr<MetricSink> make_json_lines_sink(const SinkOptions& options) {
  return std::make_unique<JsonLinesSink>(options);
}

}  // namespace moxie
