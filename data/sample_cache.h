// Samples as the dataset loader reads them: each record checked against the
// manifest and the shard index (a damaged one skipped or fatal, as
// data.on_corrupt says), recently read ones kept in memory, and the shuffle
// blocks about to be read streamed into the page cache by a background
// thread. Internal to the loader.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "data/shard.pb.h"
#include "data/shard_set.h"
#include "data/shard_verifier.h"

namespace moxie {

class SampleCache {
 public:
  // Nothing runs until start_read_ahead(). `shards` and `verifier` must
  // outlive the cache.
  SampleCache(ShardSet& shards, ShardVerifier& verifier);
  ~SampleCache();  // stop_read_ahead()
  SampleCache(const SampleCache&) = delete;
  SampleCache& operator=(const SampleCache&) = delete;

  void start_read_ahead();
  // Asks the read-ahead thread to stop and joins it (idempotent).
  void stop_read_ahead();

  // Sample `id`, read once and then from memory while it is recent; null if
  // its record is damaged and skipped. From any thread. LoaderError for a
  // damaged record under data.on_corrupt=fail, or past data.max_skipped.
  std::shared_ptr<const data::Sample> get(uint64_t id);
  // Queues the shuffle block holding sample `id` for the read-ahead thread,
  // unless it is among the recently queued ones. From any thread.
  void advise(uint64_t id);

 private:
  // The sample, or false if its record is damaged and skipped.
  bool read(uint64_t id, data::Sample* sample);
  void read_ahead_loop();

  ShardSet& shards_;
  ShardVerifier& verifier_;

  // Recently read samples: a long document spans many rows and batches, and
  // is read and parsed once, not once per piece. Bounded by bytes.
  struct Cached {
    uint64_t id;
    std::shared_ptr<const data::Sample> sample;  // null: damaged, skipped
    uint64_t bytes;
  };
  std::mutex cache_mutex_;
  std::list<Cached> lru_;  // most recently used first
  std::unordered_map<uint64_t, std::list<Cached>::iterator> cache_;
  uint64_t cache_bytes_ = 0, cache_limit_ = 64ull << 20;

  // Read-ahead: a thread that reads whole shuffle blocks sequentially into
  // the page cache (the current and the next one), so that the workers'
  // record reads, in shuffled order within a block, come from memory while
  // the disk streams.
  std::mutex ahead_mutex_;
  std::condition_variable ahead_cv_;
  std::set<uint64_t> advised_;  // blocks queued or read
  std::vector<uint64_t> ahead_queue_;
  bool ahead_stop_ = false;
  std::thread ahead_thread_;
};

}  // namespace moxie
