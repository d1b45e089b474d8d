// Where a run's metrics go: every MetricSink receives each step's metrics,
// each evaluation and the run's log messages. The JSON-lines file and the
// console are sinks today; a new destination (TensorBoard, energy) is one
// new file and one line in make_metric_sinks (metric_sinks.cpp). Torch-free.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace moxie {

struct StepMetrics {
  int64_t step = 0;  // 1-based, after the optimizer step
  int64_t total_steps = 0;
  double loss = 0;       // the objective's loss over the step's global batch
  double aux_loss = 0;   // weighted router losses, summed over layers
  double balance = 0;    // mean unweighted balance loss over layers (1 = balanced)
  double grad_norm = 0;  // before clipping
  double lr = 0;
  double tokens_per_s = 0;  // the global batch's tokens over the step time
  double step_time_s = 0;
  double load_min = 0;      // smallest share of a layer's assignments one expert got
  double load_max = 0;      // largest share
  double dropped_frac = 0;  // assignments dropped by capacity
  bool skipped = false;     // non-finite loss or gradient: update not applied
  std::vector<std::pair<std::string, double>> extra;  // the objective's own metrics
};

class MetricSink {
 public:
  virtual ~MetricSink() = default;
  virtual void step(const StepMetrics& m) = 0;
  virtual void eval(int64_t step, double loss) = 0;
  virtual void message(const std::string& line) = 0;  // a plain log line
};

struct SinkOptions {
  std::string run_dir;
  int64_t log_every = 10;       // console: a line every this many steps
  std::ostream* out = nullptr;  // console: where log lines go
  bool append = false;          // a resumed run adds to its files instead of starting them anew
};

// The built-in sinks. Each throws naming the file it cannot write.
std::unique_ptr<MetricSink> make_json_lines_sink(
    const SinkOptions& options);  // run_dir/metrics.jsonl
std::unique_ptr<MetricSink> make_console_sink(
    const SinkOptions& options);  // log lines, a progress bar on a terminal

// Every sink of a run, fed in order; one that is not `enabled` (ranks other
// than 0) has none and writes nothing.
class MetricSinks : public MetricSink {
 public:
  void add(std::unique_ptr<MetricSink> sink) { sinks_.push_back(std::move(sink)); }
  void step(const StepMetrics& m) override;
  void eval(int64_t step, double loss) override;
  void message(const std::string& line) override;

 private:
  std::vector<std::unique_ptr<MetricSink>> sinks_;
};

std::unique_ptr<MetricSinks> make_metric_sinks(const SinkOptions& options, bool enabled);

}  // namespace moxie
