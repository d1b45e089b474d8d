// MetricSinks: metrics.jsonl as a JSON reader sees it (every field, NaN as
// null, the objective's extra metrics, append on resume), the console's
// cadence, and the fan-out to every registered sink in order.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/train/metric_sink.h"
#include "tests/testing.h"

using namespace moxie;

namespace {

std::vector<nlohmann::json> lines_of(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

StepMetrics metrics(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.total_steps = 4;
  m.loss = 2.5 - 0.25 * static_cast<double>(step);
  m.aux_loss = 0.01;
  m.grad_norm = 0.75;
  m.lr = 1e-3;
  m.load_min = 0.1;
  m.load_max = 0.4;
  m.dropped_frac = 0.125;
  return m;
}

// Records what it is given, to check the fan-out.
struct Recorder : MetricSink {
  std::vector<std::string>* log;
  std::string name;
  Recorder(std::vector<std::string>* l, std::string n) : log(l), name(std::move(n)) {}
  void step(const StepMetrics& m) override {
    log->push_back(name + " step " + std::to_string(m.step));
  }
  void eval(int64_t step, double) override {
    log->push_back(name + " eval " + std::to_string(step));
  }
  void message(const std::string& line) override { log->push_back(name + " " + line); }
};

}  // namespace

TEST_CASE(
    "JSON-lines sink: one object per step and evaluation, NaN as null, extra metrics, append") {
  testing::TempDir dir;
  SinkOptions o{dir.path().string(), 1, nullptr, false};
  {
    auto sink = make_json_lines_sink(o);
    auto m = metrics(1);
    m.extra = {{"reward_margin", 0.5}};
    sink->step(m);
    auto bad = metrics(2);
    bad.loss = std::numeric_limits<double>::quiet_NaN();
    bad.grad_norm = std::numeric_limits<double>::infinity();
    bad.skipped = true;
    sink->step(bad);
    sink->eval(2, 1.75);
    sink->message("not a metric");
  }
  const auto path = dir.path().string() + "/metrics.jsonl";
  auto rows = lines_of(path);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0]["step"] == 1);
  CHECK(rows[0]["loss"] == 2.25);
  CHECK(rows[0]["aux_loss"] == 0.01);
  CHECK(rows[0]["grad_norm"] == 0.75);
  CHECK(rows[0]["lr"] == 1e-3);
  CHECK(rows[0]["expert_load_min"] == 0.1);
  CHECK(rows[0]["expert_load_max"] == 0.4);
  CHECK(rows[0]["dropped_frac"] == 0.125);
  CHECK(rows[0]["skipped"] == false);
  CHECK(rows[0]["reward_margin"] == 0.5);
  CHECK(rows[1]["loss"].is_null());
  CHECK(rows[1]["grad_norm"].is_null());
  CHECK(rows[1]["skipped"] == true);
  CHECK(!rows[1].contains("reward_margin"));
  CHECK(rows[2] == nlohmann::json({{"step", 2}, {"eval_loss", 1.75}}));

  // A resumed run adds to the file; a new one starts it anew.
  o.append = true;
  make_json_lines_sink(o)->step(metrics(3));
  CHECK(lines_of(path).size() == 4);
  o.append = false;
  make_json_lines_sink(o)->step(metrics(4));
  CHECK(lines_of(path).size() == 1);
}

TEST_CASE("JSON-lines sink: a run folder it cannot write is named") {
  SinkOptions o{"/nonexistent-moxie-dir/run", 1, nullptr, false};
  CHECK_THROWS_WITH(make_json_lines_sink(o),
                    Catch::Contains("/nonexistent-moxie-dir/run/metrics.jsonl"));
}

TEST_CASE("console sink: a line every log_every steps, at the last step and for skipped ones") {
  std::ostringstream out;
  SinkOptions o{"", 3, &out, false};
  {
    auto sink = make_console_sink(o);
    for (int64_t s = 1; s <= 4; ++s) {
      auto m = metrics(s);
      m.skipped = s == 1;
      sink->step(m);
    }
    sink->eval(4, 1.5);
    sink->message("done");
  }
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0].rfind("step 1/4  loss 2.2500", 0) == 0);
  CHECK(lines[0].find("SKIPPED") != std::string::npos);
  CHECK(lines[1].rfind("step 3/4  loss 1.7500", 0) == 0);
  CHECK(lines[2].rfind("step 4/4", 0) == 0);
  CHECK(lines[3] == "eval  step 4  loss 1.5000");
  CHECK(lines[4] == "done");
}

TEST_CASE(
    "metric sinks: every sink gets everything, in registration order, and disabled ranks have "
    "none") {
  std::vector<std::string> log;
  MetricSinks sinks;
  sinks.add(std::make_unique<Recorder>(&log, "a"));
  sinks.add(std::make_unique<Recorder>(&log, "b"));
  sinks.step(metrics(1));
  sinks.eval(1, 2.0);
  sinks.message("hi");
  CHECK(log ==
        std::vector<std::string>{"a step 1", "b step 1", "a eval 1", "b eval 1", "a hi", "b hi"});

  testing::TempDir dir;
  std::ostringstream out;
  auto off = make_metric_sinks({dir.path().string(), 1, &out, false}, /*enabled=*/false);
  off->step(metrics(1));
  off->message("nothing");
  CHECK(out.str().empty());
  CHECK(!std::filesystem::exists(dir.path() / "metrics.jsonl"));
}
