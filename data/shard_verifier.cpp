// Shard hashes checked against the manifest: in the background under
// data.on_corrupt=skip, before first use under data.on_corrupt=fail.
#include "data/shard_verifier.h"

#include <exception>
#include <string>

#include "data/dataset.h"

namespace moxie {

ShardVerifier::ShardVerifier(ShardSet& shards)
    : shards_(shards),
      background_(shards.o.verify_shards && shards.o.on_corrupt == OnCorrupt::kSkip),
      verified_(static_cast<size_t>(shards.manifest.shards_size())),
      requested_(shards.readers.size(), 0) {}

ShardVerifier::~ShardVerifier() { stop(); }

void ShardVerifier::start() {
  if (background_) thread_ = std::thread([this] { loop(); });
}

void ShardVerifier::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ShardVerifier::request(size_t s) {
  if (!background_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (requested_[s]) return;
    requested_[s] = 1;
    queue_.push_back(s);
  }
  cv_.notify_one();
}

void ShardVerifier::before_read(size_t s) {
  const LoaderOptions& o = shards_.o;
  const auto& reader = shards_.readers[s];
  if (o.verify_shards && o.on_corrupt == OnCorrupt::kSkip) {
    request(s);
  } else if (o.verify_shards) {
    // data.on_corrupt: fail: no sample of a shard is used before its hash matches.
    std::call_once(verified_[s], [&] {
      const auto& shard = shards_.manifest.shards(static_cast<int>(s));
      if (sha256_of_file(reader->path()) != shard.sha256()) {
        const std::string what =
            "shard " + reader->path() +
            ": sha256 differs from the manifest (the file changed after the build)";
        if (o.on_corrupt == OnCorrupt::kFail) {
          throw LoaderError(what + "; run 'moxie data verify " + o.path +
                            "', or set data.on_corrupt=skip to train around damaged records");
        }
        shards_.log("data: " + what + "; checking its records one by one");
      }
    });
  }
}

void ShardVerifier::loop() {
  while (true) {
    size_t s;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      s = queue_.front();
      queue_.erase(queue_.begin());
    }
    const auto& shard = shards_.manifest.shards(static_cast<int>(s));
    try {
      if (sha256_of_file(shards_.readers[s]->path()) != shard.sha256()) {
        shards_.log("data: shard " + shards_.readers[s]->path() +
                    ": sha256 differs from the manifest (the file changed after the build); "
                    "checking its records one by one");
      }
    } catch (const std::exception& e) {
      shards_.log(std::string("data: cannot hash shard: ") + e.what());
    }
  }
}

}  // namespace moxie
