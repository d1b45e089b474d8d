// The run's sinks, registered in one place.
#include "core/train/metric_sink.h"

namespace moxie {

void MetricSinks::step(const StepMetrics& m) {
  for (auto& s : sinks_) s->step(m);
}
void MetricSinks::eval(int64_t step, double loss) {
  for (auto& s : sinks_) s->eval(step, loss);
}
void MetricSinks::message(const std::string& line) {
  for (auto& s : sinks_) s->message(line);
}

std::unique_ptr<MetricSinks> make_metric_sinks(const SinkOptions& options, bool enabled) {
  auto sinks = std::make_unique<MetricSinks>();
  if (!enabled) return sinks;
  sinks->add(make_json_lines_sink(options));
  sinks->add(make_console_sink(options));
  return sinks;
}

}  // namespace moxie
