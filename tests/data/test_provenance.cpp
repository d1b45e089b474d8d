// The provenance log and report (data/provenance.h): for steps 1..N the
// report names exactly the samples the loader handed out in those steps (the
// reference: the sample ids of the batches themselves), their sources and
// licences; a resumed run's later line for a step replaces the earlier one;
// skipped samples are left out; a missing, damaged or too short log, or a
// changed dataset, is one LoaderError naming the file.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "data/provenance.h"
#include "data/shard_io.h"
#include "tests/testing.h"

using namespace moxie;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kBlock = 8;

// 40 text files of 20..60 bytes: a/ under MIT by "Ann", b/ under CC-BY-4.0.
std::string make_dataset(const fs::path& root) {
  for (int i = 0; i < 40; ++i) {
    std::string text = "doc " + std::to_string(i) + " ";
    text.append(static_cast<size_t>(14 + (i * 7) % 41), static_cast<char>('a' + i % 26));
    testing::write_file(
        root / "src" / (i % 2 ? "a" : "b") / ("d" + std::to_string(100 + i) + ".txt"), text);
  }
  testing::write_file(root / "sources.yaml",
                      "sources:\n  - {path: a/, license: MIT, creator: Ann}\n"
                      "  - {path: b/, license: CC-BY-4.0}\n");
  BuildOptions o;
  o.source_dir = (root / "src").string();
  o.out_dir = (root / "ds").string();
  o.sources_file = (root / "sources.yaml").string();
  o.samples_per_shard = 16;
  build_dataset(o);
  return o.out_dir;
}

LoaderOptions loader_options(const std::string& path) {
  LoaderOptions o;
  o.path = path;
  o.seed = 5;
  o.seq_len = 63;
  o.rows_per_rank = 4;  // 256 positions a step: about six samples
  o.shuffle_block = kBlock;
  o.prefetch_threads = 0;
  o.log = [](const std::string&) {};
  return o;
}

// Trains `steps` steps as the trainer logs them; the sample ids of each batch.
std::vector<std::vector<uint64_t>> log_steps(DatasetLoader& loader, ProvenanceLog& log,
                                             int64_t first, int64_t steps) {
  std::vector<std::vector<uint64_t>> ids;
  for (int64_t s = first; s < first + steps; ++s) {
    const auto batch = loader.next();
    log.step(s, batch.before, batch.after, {});
    ids.push_back(batch.sample_ids);
  }
  return ids;
}

// What the report must say about these samples: each source's URI and
// licence, from the dataset's own shards and manifest.
struct Expected {
  std::set<std::string> uris;
  std::map<std::string, int> per_license;
};

Expected expected(const std::string& dataset, const std::set<uint64_t>& samples) {
  const auto manifest = read_manifest(dataset + "/manifest.pb");
  std::vector<std::vector<uint32_t>> sources_of;
  for (const auto& shard : manifest.shards()) {
    ShardReader reader(dataset + "/" + shard.path());
    for (size_t i = 0; i < reader.size(); ++i) {
      const auto sample = reader.read(i);  // the record itself, not the shard's index
      sources_of.emplace_back(sample.sources().begin(), sample.sources().end());
    }
  }
  Expected e;
  for (uint64_t id : samples) {
    REQUIRE(sources_of.at(id).size() == 1);  // one file, one source
    const auto& src = manifest.sources(static_cast<int>(sources_of[id][0]));
    e.uris.insert(src.uri());
    ++e.per_license[src.license()];
  }
  return e;
}

// The URIs the report lists (lines "  URI  LICENCE  [CREATOR  ]sha256:...").
std::set<std::string> listed(const std::string& report) {
  std::set<std::string> uris;
  std::istringstream in(report);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  ", 0) == 0 && line.find("sha256:") != std::string::npos) {
      uris.insert(line.substr(2, line.find("  ", 2) - 2));
    }
  }
  return uris;
}

void check_report(const std::string& run, const std::string& dataset, int64_t step,
                  const std::set<uint64_t>& samples) {
  INFO("steps 1-" << step);
  const auto want = expected(dataset, samples);
  const auto report = provenance_report(run, step, /*list_all=*/true);
  INFO(report);
  CHECK_THAT(report, Contains(std::to_string(samples.size()) + " samples from " +
                              std::to_string(want.uris.size()) + " sources of " + dataset));
  CHECK(listed(report) == want.uris);
  for (const auto& [license, n] : want.per_license) {
    // One sample per source here, so as many sources as samples.
    CHECK_THAT(report, Contains("  " + license + ": " + std::to_string(n) + " samples, " +
                                std::to_string(n) + " sources\n"));
  }
  if (want.per_license.count("MIT")) CHECK_THAT(report, Contains("  MIT  Ann  sha256:"));
}

}  // namespace

TEST_CASE("provenance: the report names exactly the samples the loader gave steps 1..N") {
  testing::TempDir tmp;
  const auto dataset = make_dataset(tmp.path());
  const auto run = tmp.file("run");
  fs::create_directories(run);
  DatasetLoader loader(loader_options(dataset));
  ProvenanceLog log(run, dataset, loader.state(), kBlock);
  const auto ids = log_steps(loader, log, 1, 12);  // past the end of the first epoch (40 samples)
  REQUIRE(loader.state().epoch == 1);

  std::set<uint64_t> seen;
  for (int64_t step = 1; step <= 12; ++step) {
    seen.insert(ids[step - 1].begin(), ids[step - 1].end());
    if (step == 1 || step == 3 || step == 6 || step == 12) check_report(run, dataset, step, seen);
  }
  CHECK(seen.size() == 40);  // the epoch went round: every sample once at least

  // Without --all, the first 20 sources and how many more.
  const auto brief = provenance_report(run, 12, /*list_all=*/false);
  CHECK(listed(brief).size() == 20);
  CHECK_THAT(brief, Contains("... 20 more (--all lists every one)"));
}

TEST_CASE("provenance: a resumed run's line for a step replaces the earlier one") {
  testing::TempDir tmp;
  const auto dataset = make_dataset(tmp.path());
  const auto run = tmp.file("run");
  fs::create_directories(run);
  std::set<uint64_t> seen;
  LoaderState after_step2;
  {
    DatasetLoader loader(loader_options(dataset));
    ProvenanceLog log(run, dataset, loader.state(), kBlock);
    for (const auto& batch_ids : log_steps(loader, log, 1, 2))
      seen.insert(batch_ids.begin(), batch_ids.end());
    after_step2 = loader.state();
    // Step 3 as a crashed run logged it: a cursor a whole epoch on.
    auto far = after_step2;
    far.epoch += 1;
    log.step(3, after_step2, far, {});
  }
  // Resumed from the checkpoint after step 2: steps 3 and 4 again, appended.
  DatasetLoader loader(loader_options(dataset), &after_step2);
  ProvenanceLog log(run, dataset, loader.state(), kBlock);
  for (const auto& batch_ids : log_steps(loader, log, 3, 2))
    seen.insert(batch_ids.begin(), batch_ids.end());
  REQUIRE(seen.size() < 40);  // the crashed line would have claimed all 40
  check_report(run, dataset, 4, seen);
  CHECK_THAT(provenance_report(run, 4, true), Contains("steps 1-4 (4 logged)"));
}

TEST_CASE("provenance: samples skipped as damaged are left out and counted") {
  testing::TempDir tmp;
  const auto dataset = make_dataset(tmp.path());
  const auto run = tmp.file("run");
  fs::create_directories(run);
  DatasetLoader loader(loader_options(dataset));
  ProvenanceLog log(run, dataset, loader.state(), kBlock);
  auto first = loader.next();
  REQUIRE(first.sample_ids.size() >= 2);
  const uint64_t damaged = first.sample_ids[1];
  log.step(1, first.before, first.after, {damaged});
  std::set<uint64_t> kept(first.sample_ids.begin(), first.sample_ids.end());
  kept.erase(damaged);
  const auto report = provenance_report(run, 1, true);
  CHECK_THAT(report, Contains("1 damaged samples were skipped"));
  check_report(run, dataset, 1, kept);
}

TEST_CASE("provenance: a missing, damaged or short log, or a changed dataset, names the file") {
  testing::TempDir tmp;
  const auto dataset = make_dataset(tmp.path());
  const auto run = tmp.file("run");
  fs::create_directories(run);
  const auto path = run + "/provenance.log";

  CHECK_THROWS_AS(provenance_report(run, 1, false), LoaderError);
  CHECK_THROWS_WITH(provenance_report(run, 1, false), Contains("no provenance log " + path));
  CHECK_THROWS_WITH(ProvenanceLog(tmp.file("no/such/run"), dataset, LoaderState{}, kBlock),
                    Contains(tmp.file("no/such/run")) && Contains("train.run_dir"));

  {
    DatasetLoader loader(loader_options(dataset));
    ProvenanceLog log(run, dataset, loader.state(), kBlock);
    log_steps(loader, log, 1, 3);
  }
  const auto good = testing::read_file(path);
  CHECK_NOTHROW(provenance_report(run, 3, false));
  for (int64_t step : {0, 4}) {
    INFO("--step " << step);
    CHECK_THROWS_WITH(provenance_report(run, step, false),
                      Contains(path) && Contains("records steps up to 3") &&
                          Contains("--step " + std::to_string(step)));
  }

  SECTION("a damaged header") {
    testing::write_file(path,
                        "dataset " + dataset + " manifest\n" + good.substr(good.find('\n') + 1));
    CHECK_THROWS_WITH(provenance_report(run, 1, false),
                      Contains(path + " line 1") && Contains("damaged header"));
  }
  SECTION("a damaged step line") {
    testing::write_file(path, good + "step 4 0 x\n");
    CHECK_THROWS_WITH(provenance_report(run, 1, false),
                      Contains(path + " line 5") && Contains("damaged step line"));
  }
  SECTION("an unknown record") {
    testing::write_file(path, good + "epoch 2\n");
    CHECK_THROWS_WITH(provenance_report(run, 1, false),
                      Contains(path + " line 5") && Contains("unknown record 'epoch'"));
  }
  SECTION("no header") {
    testing::write_file(path, good.substr(good.find('\n') + 1));
    CHECK_THROWS_WITH(provenance_report(run, 1, false),
                      Contains(path) && Contains("no dataset header"));
  }
  SECTION("the dataset changed since") {
    testing::flip_byte(dataset + "/manifest.pb", 30);
    CHECK_THROWS_WITH(provenance_report(run, 1, false),
                      Contains(dataset) && Contains("missing or has changed"));
  }
  SECTION("the dataset is gone") {
    fs::remove_all(dataset);
    CHECK_THROWS_WITH(provenance_report(run, 1, false),
                      Contains(dataset) && Contains("missing or has changed"));
  }
}
