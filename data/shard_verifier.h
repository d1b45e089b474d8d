// Shard hashes checked against the manifest (LoaderOptions::verify_shards),
// the first time each shard is used. Under data.on_corrupt=skip a background
// thread hashes shards in the order they are requested, while their records
// (each with its own CRC32C) are already being read, and a mismatch is only
// logged; under data.on_corrupt=fail no sample of a shard is read before its
// hash matches. Internal to the loader.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "data/shard_set.h"

namespace moxie {

class ShardVerifier {
 public:
  // Nothing runs until start(). `shards` must outlive the verifier.
  explicit ShardVerifier(ShardSet& shards);
  ~ShardVerifier();  // stop()
  ShardVerifier(const ShardVerifier&) = delete;
  ShardVerifier& operator=(const ShardVerifier&) = delete;

  // Starts the background thread, when shards are verified under
  // data.on_corrupt=skip.
  void start();
  // Asks the background thread to stop and joins it (idempotent).
  void stop();

  // Called before a sample of shard s is read, from any thread: queues the
  // shard for the background thread, or hashes it here once (LoaderError if
  // it differs from the manifest under data.on_corrupt=fail).
  void before_read(size_t s);
  // Queues shard s for the background thread, once; nothing if none runs.
  void request(size_t s);

 private:
  void loop();

  ShardSet& shards_;
  const bool background_;                 // verify_shards under on_corrupt=skip
  std::vector<std::once_flag> verified_;  // on_corrupt=fail: hashed before use
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<uint8_t> requested_;
  std::vector<size_t> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace moxie
