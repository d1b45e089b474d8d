// Training metrics: a log line every N steps, JSON lines in the run folder,
// and a progress bar when stderr is a terminal. Torch-free.
#pragma once

#include <cstdint>
#include <fstream>
#include <iosfwd>
#include <string>

namespace moxie {

struct StepMetrics {
  int64_t step = 0;           // 1-based, after the optimizer step
  int64_t total_steps = 0;
  double loss = 0;            // mean cross-entropy over the step's micro-batches
  double aux_loss = 0;        // weighted router losses, summed over layers
  double balance = 0;         // mean unweighted balance loss over layers (1 = balanced)
  double grad_norm = 0;       // before clipping
  double lr = 0;
  double tokens_per_s = 0;    // the global batch's tokens over the step time
  double step_time_s = 0;
  double load_min = 0;        // smallest share of a layer's assignments one expert got
  double load_max = 0;        // largest share
  double dropped_frac = 0;    // assignments dropped by capacity
  bool skipped = false;       // non-finite loss or gradient: update not applied
};

class MetricsLogger {
 public:
  // Writes <run_dir>/metrics.jsonl (truncating it). Log lines go to `out`.
  // A logger that is not `enabled` (ranks other than 0) writes nothing.
  // append: a resumed run adds to metrics.jsonl instead of starting it anew.
  MetricsLogger(const std::string& run_dir, int64_t log_every, std::ostream& out,
                bool enabled = true, bool append = false);
  ~MetricsLogger();

  void step(const StepMetrics& m);
  void eval(int64_t step, double loss);
  void message(const std::string& line);  // a plain line, not cut by the progress bar

 private:
  void clear_bar();
  std::ofstream jsonl_;
  int64_t log_every_;
  std::ostream& out_;
  bool enabled_;
  bool bar_ = false;
  bool bar_shown_ = false;
};

}  // namespace moxie
