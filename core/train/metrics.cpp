// Metrics logging.
#include "core/train/metrics.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

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

// JSON has no NaN: write null so the file stays parseable.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

MetricsLogger::MetricsLogger(const std::string& run_dir, int64_t log_every, std::ostream& out,
                             bool enabled, bool append)
    : log_every_(log_every), out_(out), enabled_(enabled) {
  if (!enabled_) return;
  jsonl_.open(run_dir + "/metrics.jsonl", append ? std::ios::app : std::ios::trunc);
  if (!jsonl_) throw std::runtime_error("cannot write " + run_dir + "/metrics.jsonl");
  bar_ = isatty(STDERR_FILENO) != 0;
}

MetricsLogger::~MetricsLogger() { clear_bar(); }

void MetricsLogger::clear_bar() {
  if (bar_shown_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    bar_shown_ = false;
  }
}

void MetricsLogger::step(const StepMetrics& m) {
  if (!enabled_) return;
  nlohmann::json j = {{"step", m.step},         {"loss", num(m.loss)},
                      {"aux_loss", num(m.aux_loss)}, {"balance", num(m.balance)},
                      {"grad_norm", num(m.grad_norm)}, {"lr", m.lr},
                      {"tokens_per_s", m.tokens_per_s}, {"step_time_s", m.step_time_s},
                      {"expert_load_min", m.load_min}, {"expert_load_max", m.load_max},
                      {"dropped_frac", m.dropped_frac}, {"skipped", m.skipped}};
  jsonl_ << j.dump() << '\n';
  jsonl_.flush();

  if (m.step % log_every_ == 0 || m.step == m.total_steps || m.skipped) {
    std::ostringstream line;
    line << "step " << m.step << "/" << m.total_steps << "  loss " << fmt("%.4f", m.loss)
         << "  aux " << fmt("%.4f", m.aux_loss) << "  gnorm " << fmt("%.3f", m.grad_norm)
         << "  lr " << fmt("%.2e", m.lr) << "  " << human(m.tokens_per_s) << " tok/s"
         << "  load " << fmt("%.3f", m.load_min) << ".." << fmt("%.3f", m.load_max)
         << "  dropped " << fmt("%.3f", m.dropped_frac);
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

void MetricsLogger::eval(int64_t step, double loss) {
  if (!enabled_) return;
  jsonl_ << nlohmann::json({{"step", step}, {"eval_loss", num(loss)}}).dump() << '\n';
  jsonl_.flush();
  message("eval  step " + std::to_string(step) + "  loss " + fmt("%.4f", loss));
}

void MetricsLogger::message(const std::string& line) {
  if (!enabled_) return;
  clear_bar();
  out_ << line << std::endl;
}

}  // namespace moxie
