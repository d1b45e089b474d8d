// Provenance log and report.
#include "data/provenance.h"

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "data/dataset.h"
#include "data/manifest.h"
#include "data/sample_order.h"
#include "data/shard_io.h"

namespace moxie {
namespace fs = std::filesystem;

ProvenanceLog::ProvenanceLog(const std::string& run_dir, const std::string& dataset_path,
                             const LoaderState& start, uint64_t shuffle_block) {
  const auto path = fs::path(run_dir) / "provenance.log";
  out_.open(path, std::ios::app);
  if (!out_) throw LoaderError("cannot write " + path.string() + "; check train.run_dir");
  out_ << "dataset " << fs::absolute(dataset_path).lexically_normal().string() << " manifest "
       << start.manifest_sha256 << " seed " << start.seed << " block " << shuffle_block << "\n";
  out_.flush();
}

void ProvenanceLog::step(int64_t step, const LoaderState& b, const LoaderState& a,
                         const std::vector<uint64_t>& skipped_ids) {
  out_ << "step " << step << " " << b.epoch << " " << b.position << " " << b.offset << " "
       << a.epoch << " " << a.position << " " << a.offset;
  if (!skipped_ids.empty()) {
    out_ << " skipped";
    for (auto id : skipped_ids) out_ << " " << id;
  }
  out_ << "\n";
  out_.flush();
}

std::string provenance_report(const std::string& run_dir, int64_t step, bool list_all) {
  const auto path = (fs::path(run_dir) / "provenance.log").string();
  std::ifstream in(path);
  if (!in) {
    throw LoaderError(
        "no provenance log " + path +
        "; RUN must be the train.run_dir of a run trained on a dataset (data.source: dataset)");
  }
  struct StepLine {
    uint64_t e0, p0, o0, e1, p1, o1;
    std::set<uint64_t> skipped;
  };
  std::map<int64_t, StepLine> steps;
  std::string dataset, manifest_sha;
  uint64_t seed = 0, block = 0;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::istringstream s(line);
    std::string word;
    s >> word;
    const std::string where = path + " line " + std::to_string(line_no);
    if (word == "dataset") {
      std::string k1, k2, k3;
      if (!(s >> dataset >> k1 >> manifest_sha >> k2 >> seed >> k3 >> block) || block == 0) {
        throw LoaderError(where + ": damaged header; the log cannot be read");
      }
    } else if (word == "step") {
      int64_t n;
      StepLine st;
      if (!(s >> n >> st.e0 >> st.p0 >> st.o0 >> st.e1 >> st.p1 >> st.o1)) {
        throw LoaderError(where + ": damaged step line");
      }
      if (s >> word && word == "skipped") {
        uint64_t id;
        while (s >> id) st.skipped.insert(id);
      }
      steps[n] = st;
    } else if (!word.empty()) {
      throw LoaderError(where + ": unknown record '" + word + "'");
    }
  }
  if (dataset.empty()) throw LoaderError(path + " has no dataset header");
  if (steps.empty() || steps.rbegin()->first < step || step < 1) {
    throw LoaderError(path + " records steps up to " +
                      std::to_string(steps.empty() ? 0 : steps.rbegin()->first) + "; --step " +
                      std::to_string(step) + " is not among them");
  }
  const auto manifest_path = (fs::path(dataset) / kManifestName).string();
  if (!fs::exists(manifest_path) || hex(sha256_of_file(manifest_path)) != manifest_sha) {
    throw LoaderError("the run trained on " + dataset + " (manifest sha256 " + manifest_sha +
                      "), which is missing or has changed; provenance needs that dataset");
  }
  const auto manifest = read_manifest(manifest_path);
  // Every sample's sources, from the shard indices.
  std::vector<std::vector<uint32_t>> sources_of;
  for (const auto& shard : manifest.shards()) {
    ShardReader reader(shard_file(dataset, shard.path()));
    for (size_t i = 0; i < reader.size(); ++i) sources_of.push_back(reader.sources(i));
  }
  const uint64_t n = sources_of.size();
  SampleOrder order(n, seed, block);
  std::set<uint64_t> samples, skipped;
  int64_t counted = 0;
  for (const auto& [k, st] : steps) {
    if (k > step) break;
    ++counted;
    skipped.insert(st.skipped.begin(), st.skipped.end());
    uint64_t e = st.e0, p = st.p0;
    auto epoch = order.epoch(e);
    auto before_end = [&] {
      return e < st.e1 || (e == st.e1 && (p < st.p1 || (p == st.p1 && st.o1 > 0)));
    };
    while (before_end()) {
      samples.insert(order.sample_at(epoch, p));
      if (++p == n) {
        p = 0;
        epoch = order.epoch(++e);
      }
    }
  }
  std::map<std::string, uint64_t> samples_per_license, sources_per_license;
  std::set<uint32_t> sources;
  for (uint64_t id : samples) {
    if (skipped.count(id)) continue;
    std::set<std::string> licenses;
    for (uint32_t src : sources_of[id]) {
      sources.insert(src);
      licenses.insert(manifest.sources(static_cast<int>(src)).license());
    }
    for (const auto& l : licenses) ++samples_per_license[l];
  }
  for (uint32_t src : sources)
    ++sources_per_license[manifest.sources(static_cast<int>(src)).license()];
  std::ostringstream out;
  out << "run " << run_dir << ", steps 1-" << step << " (" << counted
      << " logged): " << samples.size() - std::min(samples.size(), skipped.size())
      << " samples from " << sources.size() << " sources of " << dataset << "\n";
  if (!skipped.empty())
    out << skipped.size() << " damaged samples were skipped (as rank 0 saw them)\n";
  out << "per licence:\n";
  for (const auto& [l, k] : samples_per_license) {
    out << "  " << l << ": " << k << " samples, " << sources_per_license[l] << " sources\n";
  }
  out << "sources:\n";
  size_t shown = 0;
  for (uint32_t src : sources) {
    if (!list_all && shown == 20) {
      out << "  ... " << sources.size() - shown << " more (--all lists every one)\n";
      break;
    }
    const auto& s = manifest.sources(static_cast<int>(src));
    out << "  " << s.uri() << "  " << s.license() << (s.creator().empty() ? "" : "  " + s.creator())
        << "  sha256:" << hex(s.sha256()).substr(0, 16) << "\n";
    ++shown;
  }
  return out.str();
}

}  // namespace moxie
