// The console: a log line every log_every steps (and for every skipped step
// and evaluation), and a progress bar on stderr when it is a terminal.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <sstream>

#include "core/train/metric_sink.h"

namespace moxie {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

std::string human(double v) {
  if (v >= 1e6) return fmt("%.2fM", v / 1e6);
  if (v >= 1e3) return fmt("%.1fk", v / 1e3);
  return fmt("%.0f", v);
}

class ConsoleSink : public MetricSink {
 public:
  explicit ConsoleSink(const SinkOptions& o)
      : log_every_(o.log_every), out_(*o.out), bar_(isatty(STDERR_FILENO) != 0) {}
  ~ConsoleSink() override { clear_bar(); }

  void step(const StepMetrics& m) override {
    if (m.step % log_every_ == 0 || m.step == m.total_steps || m.skipped) {
      std::ostringstream line;
      line << "step " << m.step << "/" << m.total_steps << "  loss " << fmt("%.4f", m.loss)
           << "  aux " << fmt("%.4f", m.aux_loss) << "  gnorm " << fmt("%.3f", m.grad_norm)
           << "  lr " << fmt("%.2e", m.lr) << "  " << human(m.tokens_per_s) << " tok/s"
           << "  load " << fmt("%.3f", m.load_min) << ".." << fmt("%.3f", m.load_max)
           << "  dropped " << fmt("%.3f", m.dropped_frac);
      for (const auto& [name, value] : m.extra) line << "  " << name << " " << fmt("%.4g", value);
      if (m.skipped) line << "  SKIPPED (non-finite loss or gradient)";
      message(line.str());
    }
    if (bar_) {
      const int width = 30;
      const int filled = static_cast<int>(width * m.step / std::max<int64_t>(1, m.total_steps));
      std::string bar(filled, '#');
      bar.resize(width, '.');
      std::fprintf(stderr, "\r[%s] %lld/%lld loss %.3f %s tok/s", bar.c_str(),
                   static_cast<long long>(m.step), static_cast<long long>(m.total_steps), m.loss,
                   human(m.tokens_per_s).c_str());
      std::fflush(stderr);
      bar_shown_ = true;
    }
  }

  void eval(int64_t step, double loss) override {
    message("eval  step " + std::to_string(step) + "  loss " + fmt("%.4f", loss));
  }

  void message(const std::string& line) override {
    clear_bar();
    out_ << line << std::endl;
  }

 private:
  void clear_bar() {
    if (bar_shown_) {
      std::fprintf(stderr, "\r\033[K");
      std::fflush(stderr);
      bar_shown_ = false;
    }
  }

  int64_t log_every_;
  std::ostream& out_;
  bool bar_;
  bool bar_shown_ = false;
};

}  // namespace

std::unique_ptr<MetricSink> make_console_sink(const SinkOptions& options) {
  return std::make_unique<ConsoleSink>(options);
}

}  // namespace moxie
