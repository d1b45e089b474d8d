// The dataset loader's shards, opened; unreadable shards skipped or fatal.
#include "data/shard_set.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "data/dataset.h"
#include "data/manifest.h"

namespace moxie {
namespace fs = std::filesystem;

ShardSet::ShardSet(const LoaderOptions& options) : o(options) {
  info = read_dataset_info(o.path);
  manifest = read_manifest((fs::path(o.path) / kManifestName).string());
  const auto& md = manifest.modality();
  info.samples = info.bytes = 0;
  for (const auto& shard : manifest.shards()) {
    const std::string path = shard_file(o.path, shard.path());
    shard_first.push_back(info.samples);
    std::unique_ptr<ShardReader> reader;
    try {
      reader = std::make_unique<ShardReader>(path);
      if (reader->size() != shard.samples()) {
        throw ShardError("shard " + path + " holds " + std::to_string(reader->size()) +
                         " samples, the manifest says " + std::to_string(shard.samples()));
      }
    } catch (const ShardError& e) {
      if (o.on_corrupt == OnCorrupt::kFail) {
        throw LoaderError(std::string(e.what()) +
                          " (data.on_corrupt=fail; run 'moxie data verify " + o.path + "')");
      }
      skipped += shard.samples();
      log("data: skipping all " + std::to_string(shard.samples()) + " samples of " + e.what());
      reader.reset();
    }
    for (uint64_t i = 0; i < shard.samples(); ++i) {
      positions.push_back(reader ? reader->positions(i) : 0);
      whole.push_back(reader ? reader->keep_whole(i) : 0);
    }
    info.samples += shard.samples();
    info.bytes += shard.bytes();
    readers.push_back(std::move(reader));
  }
  if (skipped > o.max_skipped) {
    throw LoaderError(
        "data: " + std::to_string(skipped.load()) +
        " samples skipped, more than data.max_skipped=" + std::to_string(o.max_skipped) +
        "; repair the dataset (moxie data verify " + o.path + ")");
  }
  if (info.samples == 0 ||
      std::all_of(positions.begin(), positions.end(), [](uint32_t p) { return p == 0; })) {
    throw LoaderError("dataset " + o.path + " has no readable samples");
  }
  if (md.image_patch() == 0 || md.audio_frame() == 0) {
    throw LoaderError("dataset " + o.path +
                      ": manifest has no image patch or audio frame size; rebuild it");
  }
}

size_t ShardSet::shard_of(uint64_t id) const {
  return static_cast<size_t>(std::upper_bound(shard_first.begin(), shard_first.end(), id) -
                             shard_first.begin() - 1);
}

std::string ShardSet::sources_of(size_t shard, uint64_t local) const {
  std::string out;
  for (uint32_t s : readers[shard]->sources(local)) {
    if (s < static_cast<uint32_t>(manifest.sources_size())) {
      out += (out.empty() ? "" : ", ") + manifest.sources(static_cast<int>(s)).uri();
    }
  }
  return out.empty() ? "unknown" : out;
}

void ShardSet::log(const std::string& line) {
  std::lock_guard<std::mutex> lock(log_mutex_);
  if (o.log) {
    o.log(line);
  } else {
    std::cerr << line << "\n";
  }
}

}  // namespace moxie
