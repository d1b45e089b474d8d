// Samples read, checked and cached for the dataset loader; blocks read ahead.
#include "data/sample_cache.h"

#include <algorithm>
#include <string>

#include "data/manifest.h"

namespace moxie {

SampleCache::SampleCache(ShardSet& shards, ShardVerifier& verifier)
    : shards_(shards), verifier_(verifier) {}

SampleCache::~SampleCache() { stop_read_ahead(); }

void SampleCache::start_read_ahead() {
  ahead_thread_ = std::thread([this] { read_ahead_loop(); });
}

void SampleCache::stop_read_ahead() {
  {
    std::lock_guard<std::mutex> lock(ahead_mutex_);
    ahead_stop_ = true;
  }
  ahead_cv_.notify_all();
  if (ahead_thread_.joinable()) ahead_thread_.join();
}

void SampleCache::advise(uint64_t id) {
  const uint64_t block = id / shards_.o.shuffle_block;
  {
    std::lock_guard<std::mutex> lock(ahead_mutex_);
    if (!advised_.insert(block).second) return;
    ahead_queue_.push_back(block);
    // Blocks long passed may be read again in a later epoch.
    if (advised_.size() > 64) advised_.erase(advised_.begin());
  }
  ahead_cv_.notify_one();
}

void SampleCache::read_ahead_loop() {
  const uint64_t shuffle_block = shards_.o.shuffle_block;
  const auto& readers = shards_.readers;
  const auto& shard_first = shards_.shard_first;
  while (true) {
    uint64_t block;
    {
      std::unique_lock<std::mutex> lock(ahead_mutex_);
      ahead_cv_.wait(lock, [&] { return ahead_stop_ || !ahead_queue_.empty(); });
      if (ahead_stop_) return;
      block = ahead_queue_.front();
      ahead_queue_.erase(ahead_queue_.begin());
    }
    const uint64_t first = block * shuffle_block,
                   last = std::min(shards_.info.samples, first + shuffle_block);
    for (size_t s = shards_.shard_of(first); s < readers.size() && shard_first[s] < last; ++s) {
      if (!readers[s]) continue;
      verifier_.request(s);
      const uint64_t lo = std::max(first, shard_first[s]) - shard_first[s];
      const uint64_t hi = std::min<uint64_t>(last - shard_first[s], readers[s]->size());
      readers[s]->prefetch(lo, hi);
    }
  }
}

std::shared_ptr<const data::Sample> SampleCache::get(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(id);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->sample;
    }
  }
  advise(id);
  auto sample = std::make_shared<data::Sample>();
  std::shared_ptr<const data::Sample> result;
  if (read(id, sample.get())) result = sample;
  // Memory held, roughly (ByteSizeLong would walk every token).
  uint64_t bytes = 64;
  if (result) {
    for (const auto& seg : result->segments()) {
      bytes += seg.has_text()    ? seg.text().tokens().size()
               : seg.has_image() ? seg.image().pixels().size()
                                 : seg.audio().pcm_s16le().size();
    }
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.count(id)) return result;  // another thread read it meanwhile
  lru_.push_front(Cached{id, result, bytes});
  cache_[id] = lru_.begin();
  cache_bytes_ += bytes;
  while (cache_bytes_ > cache_limit_ && lru_.size() > 1) {
    cache_bytes_ -= lru_.back().bytes;
    cache_.erase(lru_.back().id);
    lru_.pop_back();
  }
  return result;
}

bool SampleCache::read(uint64_t id, data::Sample* sample) {
  const LoaderOptions& o = shards_.o;
  const size_t s = shards_.shard_of(id);
  const uint64_t local = id - shards_.shard_first[s];
  const auto& reader = shards_.readers[s];
  verifier_.before_read(s);
  std::string problem;
  try {
    *sample = reader->read(local);
    const auto& md = shards_.manifest.modality();
    for (const auto& seg : sample->segments()) {
      if (seg.has_text() && !text_tokens_valid(seg.text())) {
        problem = "text tokens of an unknown width";
      }
      if (seg.has_image() &&
          (seg.image().width() != md.image_size() || seg.image().height() != md.image_size() ||
           seg.image().channels() != md.image_channels() ||
           seg.image().pixels().size() !=
               static_cast<size_t>(md.image_size()) * md.image_size() * md.image_channels())) {
        problem = "image of another size than the manifest's";
      }
    }
    if (problem.empty() && sample_positions(*sample, md) != shards_.positions[id]) {
      problem = "sample length differs from the shard index";
    }
  } catch (const ShardError& e) {
    problem = e.what();
  }
  if (problem.empty()) return true;
  const std::string what = "sample " + std::to_string(id) + " (shard " + reader->path() +
                           ", byte " + std::to_string(reader->offset(local)) + ", source " +
                           shards_.sources_of(s, local) + "): " + problem;
  if (o.on_corrupt == OnCorrupt::kFail) {
    throw LoaderError("data: " + what + "; run 'moxie data verify " + o.path +
                      "', or set data.on_corrupt=skip to train around damaged records");
  }
  const uint64_t n = ++shards_.skipped;
  shards_.log("data: skipped " + what + " (" + std::to_string(n) + " of at most " +
              std::to_string(o.max_skipped) + ")");
  if (n > o.max_skipped) {
    throw LoaderError("data: more than data.max_skipped=" + std::to_string(o.max_skipped) +
                      " damaged samples; stopping. Repair the dataset (moxie data verify " +
                      o.path + ")");
  }
  return false;
}

}  // namespace moxie
