// The dataset loader's shards (data/loader.h), as opened once: the manifest,
// one reader per shard, each sample's length in model positions; and the
// skip count and messages that the loader's threads share. Internal to the
// loader; torch-free, includes protobuf.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/shard.pb.h"
#include "data/shard_io.h"

namespace moxie {

// Everything but `skipped` and log() is read-only after construction, so any
// thread may read it.
struct ShardSet {
  // Opens the manifest and every shard's header and index. Under
  // data.on_corrupt=skip a shard that cannot be opened is logged and its
  // samples counted as skipped. LoaderError naming the fix for a missing
  // dataset, a shard that cannot be opened under data.on_corrupt=fail, more
  // than data.max_skipped samples skipped, or no readable sample. `options`
  // must outlive the set.
  explicit ShardSet(const LoaderOptions& options);
  ShardSet(const ShardSet&) = delete;
  ShardSet& operator=(const ShardSet&) = delete;

  const LoaderOptions& o;
  DatasetInfo info;  // samples and bytes: of every shard in the manifest
  data::Manifest manifest;
  std::vector<std::unique_ptr<ShardReader>> readers;  // null: unreadable (skipped)
  std::vector<uint64_t> shard_first;                  // first sample id of each shard
  std::vector<uint32_t> positions;                    // per sample; 0 in an unreadable shard
  std::vector<uint8_t> whole;  // per sample: starts a fresh row when it fits one
  std::atomic<uint64_t> skipped{0};

  // The shard holding sample `id`.
  size_t shard_of(uint64_t id) const;
  // The URIs of the sources of a shard's sample `local`, "unknown" if none.
  std::string sources_of(size_t shard, uint64_t local) const;
  // One line to LoaderOptions::log (default: standard error); from any thread.
  void log(const std::string& line);

 private:
  std::mutex log_mutex_;
};

}  // namespace moxie
