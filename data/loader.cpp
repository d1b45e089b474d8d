// The dataset loader: its resume state, the manifest summary, and
// DatasetLoader, which wires the shards (data/shard_set.h), their
// verification (data/shard_verifier.h), the sample cache and read-ahead
// (data/sample_cache.h) and packing (data/packing.h) to the threads that
// fill batches ahead of the trainer within a memory budget.
#include "data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "data/dataset.h"
#include "data/manifest.h"
#include "data/packing.h"
#include "data/sample_cache.h"
#include "data/shard_set.h"
#include "data/shard_verifier.h"

namespace moxie {
namespace fs = std::filesystem;

std::string LoaderState::to_string() const {
  std::ostringstream s;
  s << "seed=" << seed << " epoch=" << epoch << " position=" << position << " offset=" << offset
    << " batches=" << batches << " manifest=" << manifest_sha256;
  return s.str();
}

LoaderState LoaderState::parse(const std::string& line) {
  LoaderState st;
  std::istringstream in(line);
  std::string field;
  std::map<std::string, std::string> kv;
  while (in >> field) {
    const auto eq = field.find('=');
    if (eq == std::string::npos)
      throw LoaderError("loader state '" + line + "': '" + field + "' is not key=value");
    kv[field.substr(0, eq)] = field.substr(eq + 1);
  }
  auto number = [&](const char* key) -> uint64_t {
    const auto it = kv.find(key);
    if (it == kv.end()) throw LoaderError("loader state '" + line + "' lacks " + key);
    try {
      size_t used = 0;
      const uint64_t v = std::stoull(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument(key);
      return v;
    } catch (const std::exception&) {
      throw LoaderError("loader state '" + line + "': " + key + "=" + it->second +
                        " is not a number");
    }
  };
  st.seed = number("seed");
  st.epoch = number("epoch");
  st.position = number("position");
  st.offset = number("offset");
  st.batches = number("batches");
  if (!kv.count("manifest")) throw LoaderError("loader state '" + line + "' lacks manifest");
  st.manifest_sha256 = kv["manifest"];
  return st;
}

bool LoaderState::operator==(const LoaderState& o) const {
  return seed == o.seed && epoch == o.epoch && position == o.position && offset == o.offset &&
         batches == o.batches && manifest_sha256 == o.manifest_sha256;
}

uint64_t PackedBatch::bytes() const {
  return tokens.size() * 4 + doc.size() * 4 + kind.size() + patches.size() * 4 + frames.size() * 4 +
         (patch_slot.size() + patch_index.size() + frame_slot.size() + frame_index.size() +
          sample_ids.size()) *
             8;
}

DatasetInfo read_dataset_info(const std::string& path) {
  const std::string manifest_path = (fs::path(path) / kManifestName).string();
  if (!fs::exists(manifest_path)) {
    throw LoaderError("data.path " + path + " holds no dataset (no " + kManifestName +
                      "); build one with 'moxie data build SRC " + path + "'");
  }
  DatasetInfo info;
  data::Manifest manifest;
  try {
    manifest = read_manifest(manifest_path);
    info.manifest_sha256 = hex(sha256_of_file(manifest_path));
  } catch (const DatasetError& e) {
    throw LoaderError(e.what());
  }
  info.tokenizer = manifest.tokenizer();
  const auto& sp = manifest.special();
  info.special = {sp.bos(),       sp.eos(),         sp.pad(),       sp.image_begin(),
                  sp.image_end(), sp.audio_begin(), sp.audio_end(), sp.vocab_size()};
  const auto& md = manifest.modality();
  info.image_size = md.image_size();
  info.image_patch = md.image_patch();
  info.image_channels = md.image_channels();
  info.audio_frame = md.audio_frame();
  info.audio_sample_rate = md.audio_sample_rate();
  info.images = manifest.images();
  info.audio_clips = manifest.audio_clips();
  for (const auto& shard : manifest.shards()) {
    info.samples += shard.samples();
    info.bytes += shard.bytes();
  }
  return info;
}

namespace {

// A batch filled ahead, or why it could not be.
struct Result {
  PackedBatch batch;
  std::exception_ptr error;
};

LoaderOptions checked(LoaderOptions o) {
  if (o.seq_len < 1 || o.rows_per_rank < 1 || o.dp_size < 1 || o.dp_rank < 0 ||
      o.dp_rank >= o.dp_size || o.shuffle_block < 1) {
    throw LoaderError(
        "loader: seq_len, rows per rank, shuffle block and dp size must be positive, dp_rank below "
        "dp size");
  }
  return o;
}

}  // namespace

struct DatasetLoader::Impl {
  explicit Impl(LoaderOptions options)
      : o(checked(std::move(options))),
        shards(o),
        verifier(shards),
        samples(shards, verifier),
        planner(o, shards, [this](uint64_t id) { samples.advise(id); }) {}

  LoaderOptions o;
  ShardSet shards;
  ShardVerifier verifier;
  SampleCache samples;
  PackingPlanner planner;  // guarded by m

  // Prefetch.
  std::mutex m;
  std::condition_variable cv;
  std::map<uint64_t, Result> results;
  uint64_t next_ticket = 0, consumed = 0, max_in_flight = 1;
  bool stop = false;
  std::vector<std::thread> workers;
  LoaderState last;

  PackedBatch fill(const BatchPlan& plan) {
    return fill_batch(plan, o.rows_per_rank, planner.row_len(), shards.info, samples);
  }

  void worker() {
    while (true) {
      BatchPlan plan;
      uint64_t ticket;
      {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return stop || next_ticket - consumed < max_in_flight; });
        if (stop) return;
        ticket = next_ticket++;
        plan = planner.next();
      }
      Result r;
      try {
        r.batch = fill(plan);
      } catch (...) {
        r.error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(m);
      results[ticket] = std::move(r);
      cv.notify_all();
    }
  }
};

DatasetLoader::DatasetLoader(LoaderOptions options, const LoaderState* resume)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& I = *impl_;
  const DatasetInfo& info = I.shards.info;
  if (resume) {
    if (resume->manifest_sha256 != info.manifest_sha256) {
      throw LoaderError("the resume state was written for the dataset with manifest sha256 " +
                        resume->manifest_sha256 + ", but " + I.o.path + " has " +
                        info.manifest_sha256 +
                        "; point data.path at the dataset the run was started with");
    }
    if (resume->seed != I.o.seed) {
      throw LoaderError("the resume state was written with seed " + std::to_string(resume->seed) +
                        ", this run has seed " + std::to_string(I.o.seed) + "; use the run's seed");
    }
    if (resume->position >= info.samples ||
        (resume->offset > 0 &&
         resume->offset >=
             I.shards.positions[I.planner.sample_at(resume->epoch, resume->position)])) {
      throw LoaderError("the resume state " + resume->to_string() + " lies outside the dataset's " +
                        std::to_string(info.samples) + " samples");
    }
    I.planner.resume_from(*resume);
  }
  I.last = I.planner.cursor();
  I.verifier.start();
  I.samples.start_read_ahead();
  I.planner.start_read_ahead();
  if (I.o.prefetch_threads > 0) {
    const uint64_t L = static_cast<uint64_t>(I.planner.row_len() * I.o.rows_per_rank);
    const uint64_t media = std::max<uint64_t>(
        info.image_patch * info.image_patch * info.image_channels, info.audio_frame);
    const uint64_t worst = L * (9 + 4 * media + 16);
    I.max_in_flight = std::clamp<uint64_t>(I.o.prefetch_bytes / std::max<uint64_t>(worst, 1), 1,
                                           2 * static_cast<uint64_t>(I.o.prefetch_threads) + 1);
    for (int t = 0; t < I.o.prefetch_threads; ++t) I.workers.emplace_back([&I] { I.worker(); });
  }
}

DatasetLoader::~DatasetLoader() {
  {
    std::lock_guard<std::mutex> lock(impl_->m);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->workers) t.join();
  impl_->samples.stop_read_ahead();
  impl_->verifier.stop();
}

PackedBatch DatasetLoader::next() {
  auto& I = *impl_;
  Result r;
  if (I.workers.empty()) {
    BatchPlan plan;
    {
      std::lock_guard<std::mutex> lock(I.m);
      plan = I.planner.next();
    }
    r.batch = I.fill(plan);
  } else {
    std::unique_lock<std::mutex> lock(I.m);
    I.cv.wait(lock, [&] { return I.results.count(I.consumed) > 0; });
    r = std::move(I.results[I.consumed]);
    I.results.erase(I.consumed);
    ++I.consumed;
    I.cv.notify_all();
  }
  if (r.error) std::rethrow_exception(r.error);
  I.last = r.batch.after;
  return std::move(r.batch);
}

LoaderState DatasetLoader::state() const { return impl_->last; }
const DatasetInfo& DatasetLoader::info() const { return impl_->shards.info; }
uint64_t DatasetLoader::skipped() const { return impl_->shards.skipped.load(); }

}  // namespace moxie
