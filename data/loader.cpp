// The dataset loader: global packing plan, per-rank filling, prefetch threads.
#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <list>
#include <map>
#include <unordered_map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "data/dataset.h"
#include "data/manifest.h"
#include "data/sample_order.h"
#include "data/shard_io.h"

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
    if (eq == std::string::npos) throw LoaderError("loader state '" + line + "': '" + field + "' is not key=value");
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
      throw LoaderError("loader state '" + line + "': " + key + "=" + it->second + " is not a number");
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
  return tokens.size() * 4 + doc.size() * 4 + kind.size() + patches.size() * 4 +
         frames.size() * 4 + (patch_slot.size() + patch_index.size() + frame_slot.size() +
                              frame_index.size() + sample_ids.size()) * 8;
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
  info.special = {sp.bos(), sp.eos(), sp.pad(), sp.image_begin(), sp.image_end(),
                  sp.audio_begin(), sp.audio_end(), sp.vocab_size()};
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

using Piece = PackedBatch::Piece;

struct Plan {
  LoaderState before, after;
  std::vector<Piece> pieces;
};

struct Result {
  PackedBatch batch;
  std::exception_ptr error;
};

}  // namespace

struct DatasetLoader::Impl {
  LoaderOptions o;
  DatasetInfo info;
  data::Manifest manifest;
  std::vector<std::unique_ptr<ShardReader>> readers;  // null: unreadable (skipped)
  std::vector<uint64_t> shard_first;                  // first sample id of each shard
  std::vector<uint32_t> positions;                    // per sample
  std::vector<uint8_t> whole;                         // per sample: starts a fresh row when it fits one
  std::unique_ptr<SampleOrder> order;
  int64_t row_len = 0;

  std::vector<std::once_flag> verified;

  // Under data.on_corrupt: skip, shards are hashed by a background thread in
  // the order they are first needed, while their records (each with its own
  // CRC32C) are already being read; a mismatch is logged.
  std::mutex verify_mutex;
  std::condition_variable verify_cv;
  std::vector<uint8_t> verify_requested;
  std::vector<size_t> verify_queue;
  bool verify_stop = false;
  std::thread verify_thread;

  void request_verify(size_t s) {
    {
      std::lock_guard<std::mutex> lock(verify_mutex);
      if (verify_requested[s]) return;
      verify_requested[s] = 1;
      verify_queue.push_back(s);
    }
    verify_cv.notify_one();
  }

  void verify_loop() {
    while (true) {
      size_t s;
      {
        std::unique_lock<std::mutex> lock(verify_mutex);
        verify_cv.wait(lock, [&] { return verify_stop || !verify_queue.empty(); });
        if (verify_stop) return;
        s = verify_queue.front();
        verify_queue.erase(verify_queue.begin());
      }
      const auto& shard = manifest.shards(static_cast<int>(s));
      try {
        if (sha256_of_file(readers[s]->path()) != shard.sha256()) {
          log("data: shard " + readers[s]->path() +
              ": sha256 differs from the manifest (the file changed after the build); checking its "
              "records one by one");
        }
      } catch (const std::exception& e) {
        log(std::string("data: cannot hash shard: ") + e.what());
      }
    }
  }

  // Recently read samples: a long document spans many rows and batches, and
  // is read and parsed once, not once per piece. Bounded by bytes.
  struct Cached {
    uint64_t id;
    std::shared_ptr<const data::Sample> sample;  // null: damaged, skipped
    uint64_t bytes;
  };
  std::mutex cache_mutex;
  std::list<Cached> lru;  // most recently used first
  std::unordered_map<uint64_t, std::list<Cached>::iterator> cache;
  uint64_t cache_bytes = 0, cache_limit = 64ull << 20;

  // Read-ahead: a thread that reads whole shuffle blocks sequentially into
  // the page cache (the current and the next one), so that the workers'
  // record reads, in shuffled order within a block, come from memory while
  // the disk streams.
  std::mutex ahead_mutex;
  std::condition_variable ahead_cv;
  std::set<uint64_t> advised;      // blocks queued or read
  std::vector<uint64_t> ahead_queue;
  bool ahead_stop = false;
  std::thread ahead_thread;

  void advise(uint64_t id) {
    const uint64_t block = id / o.shuffle_block;
    {
      std::lock_guard<std::mutex> lock(ahead_mutex);
      if (!advised.insert(block).second) return;
      ahead_queue.push_back(block);
      // Blocks long passed may be read again in a later epoch.
      if (advised.size() > 64) advised.erase(advised.begin());
    }
    ahead_cv.notify_one();
  }

  void read_ahead_loop() {
    while (true) {
      uint64_t block;
      {
        std::unique_lock<std::mutex> lock(ahead_mutex);
        ahead_cv.wait(lock, [&] { return ahead_stop || !ahead_queue.empty(); });
        if (ahead_stop) return;
        block = ahead_queue.front();
        ahead_queue.erase(ahead_queue.begin());
      }
      const uint64_t first = block * o.shuffle_block, last = std::min(info.samples, first + o.shuffle_block);
      for (size_t s = shard_of(first); s < readers.size() && shard_first[s] < last; ++s) {
        if (!readers[s]) continue;
        if (verify_thread.joinable()) request_verify(s);
        const uint64_t lo = std::max(first, shard_first[s]) - shard_first[s];
        const uint64_t hi = std::min<uint64_t>(last - shard_first[s], readers[s]->size());
        readers[s]->prefetch(lo, hi);
      }
    }
  }

  // The sample (null if its record is damaged and skipped), through the cache.
  std::shared_ptr<const data::Sample> get(uint64_t id) {
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto it = cache.find(id);
      if (it != cache.end()) {
        lru.splice(lru.begin(), lru, it->second);
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
        bytes += seg.has_text() ? seg.text().tokens().size()
                 : seg.has_image() ? seg.image().pixels().size()
                                   : seg.audio().pcm_s16le().size();
      }
    }
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.count(id)) return result;  // another thread read it meanwhile
    lru.push_front(Cached{id, result, bytes});
    cache[id] = lru.begin();
    cache_bytes += bytes;
    while (cache_bytes > cache_limit && lru.size() > 1) {
      cache_bytes -= lru.back().bytes;
      cache.erase(lru.back().id);
      lru.pop_back();
    }
    return result;
  }
  std::atomic<uint64_t> skipped{0};
  std::mutex log_mutex;

  // Planner (guarded by m).
  LoaderState cursor;
  uint64_t cached_epoch = UINT64_MAX;
  SampleOrder::Epoch epoch_key;

  // Prefetch.
  std::mutex m;
  std::condition_variable cv;
  std::map<uint64_t, Result> results;
  uint64_t next_ticket = 0, consumed = 0, max_in_flight = 1;
  bool stop = false;
  std::vector<std::thread> workers;
  LoaderState last;

  void log(const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mutex);
    if (o.log) {
      o.log(line);
    } else {
      std::cerr << line << "\n";
    }
  }

  void open() {
    info = read_dataset_info(o.path);
    manifest = read_manifest((fs::path(o.path) / kManifestName).string());
    const auto& md = manifest.modality();
    info.samples = info.bytes = 0;
    verified = std::vector<std::once_flag>(static_cast<size_t>(manifest.shards_size()));
    for (const auto& shard : manifest.shards()) {
      const std::string path = (fs::path(o.path) / shard.path()).string();
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
      throw LoaderError("data: " + std::to_string(skipped.load()) + " samples skipped, more than data.max_skipped=" +
                        std::to_string(o.max_skipped) + "; repair the dataset (moxie data verify " + o.path + ")");
    }
    if (info.samples == 0 || std::all_of(positions.begin(), positions.end(), [](uint32_t p) { return p == 0; })) {
      throw LoaderError("dataset " + o.path + " has no readable samples");
    }
    if (md.image_patch() == 0 || md.audio_frame() == 0) {
      throw LoaderError("dataset " + o.path + ": manifest has no image patch or audio frame size; rebuild it");
    }
    order = std::make_unique<SampleOrder>(info.samples, o.seed, o.shuffle_block);
  }

  uint64_t sample_at(uint64_t epoch, uint64_t position) {
    if (epoch != cached_epoch) {
      epoch_key = order->epoch(epoch);
      cached_epoch = epoch;
    }
    return order->sample_at(epoch_key, position);
  }

  void advance() {
    cursor.offset = 0;
    if (++cursor.position == info.samples) {
      cursor.position = 0;
      ++cursor.epoch;
    }
    if (cursor.position % o.shuffle_block == 0) read_ahead();
  }

  // Entering a block of positions: have the kernel read the next block's
  // samples now, so that they are in memory when the walk gets there.
  void read_ahead() {
    uint64_t e = cursor.epoch, p = cursor.position + o.shuffle_block;
    if (p >= info.samples) {
      p -= info.samples;
      ++e;
    }
    if (p < info.samples) advise(order->sample_at(order->epoch(e), p));
  }

  // The next global batch's layout; this rank's pieces. Caller holds m.
  Plan plan_next() {
    Plan plan;
    plan.before = cursor;
    const int64_t rows = o.rows_per_rank * o.dp_size;
    for (int64_t r = 0; r < rows; ++r) {
      const bool mine = r / o.rows_per_rank == o.dp_rank;
      int64_t col = 0;
      while (col < row_len) {
        const uint64_t id = sample_at(cursor.epoch, cursor.position);
        const uint64_t len = positions[id];
        if (len == 0) {  // in a shard that could not be opened
          advance();
          continue;
        }
        if (cursor.offset == 0 && col > 0 && whole[id] && static_cast<int64_t>(len) <= row_len &&
            static_cast<int64_t>(len) > row_len - col) {
          break;  // samples with media or an SFT prompt start on a fresh row
        }
        const uint64_t take = std::min<uint64_t>(len - cursor.offset, static_cast<uint64_t>(row_len - col));
        if (mine) {
          plan.pieces.push_back({id, static_cast<uint32_t>(cursor.offset),
                                 static_cast<uint32_t>(cursor.offset + take),
                                 r - o.dp_rank * o.rows_per_rank, col});
        }
        col += static_cast<int64_t>(take);
        cursor.offset += take;
        if (cursor.offset == len) advance();
      }
    }
    ++cursor.batches;
    plan.after = cursor;
    return plan;
  }

  size_t shard_of(uint64_t id) const {
    return static_cast<size_t>(std::upper_bound(shard_first.begin(), shard_first.end(), id) -
                               shard_first.begin() - 1);
  }

  std::string sources_of(size_t shard, uint64_t local) const {
    std::string out;
    for (uint32_t s : readers[shard]->sources(local)) {
      if (s < static_cast<uint32_t>(manifest.sources_size())) {
        out += (out.empty() ? "" : ", ") + manifest.sources(static_cast<int>(s)).uri();
      }
    }
    return out.empty() ? "unknown" : out;
  }

  // The sample, or false if its record is damaged and skipped.
  bool read(uint64_t id, data::Sample* sample) {
    const size_t s = shard_of(id);
    const uint64_t local = id - shard_first[s];
    const auto& reader = readers[s];
    if (o.verify_shards && o.on_corrupt == OnCorrupt::kSkip) {
      request_verify(s);
    } else if (o.verify_shards) {
      // data.on_corrupt: fail: no sample of a shard is used before its hash matches.
      std::call_once(verified[s], [&] {
        const auto& shard = manifest.shards(static_cast<int>(s));
        if (sha256_of_file(reader->path()) != shard.sha256()) {
          const std::string what = "shard " + reader->path() +
                                   ": sha256 differs from the manifest (the file changed after the build)";
          if (o.on_corrupt == OnCorrupt::kFail) {
            throw LoaderError(what + "; run 'moxie data verify " + o.path +
                              "', or set data.on_corrupt=skip to train around damaged records");
          }
          log("data: " + what + "; checking its records one by one");
        }
      });
    }
    std::string problem;
    try {
      *sample = reader->read(local);
      const auto& md = manifest.modality();
      for (const auto& seg : sample->segments()) {
        if (seg.has_text() && !text_tokens_valid(seg.text())) problem = "text tokens of an unknown width";
        if (seg.has_image() && (seg.image().width() != md.image_size() || seg.image().height() != md.image_size() ||
                                seg.image().channels() != md.image_channels() ||
                                seg.image().pixels().size() != static_cast<size_t>(md.image_size()) * md.image_size() * md.image_channels())) {
          problem = "image of another size than the manifest's";
        }
      }
      if (problem.empty() && sample_positions(*sample, md) != positions[id]) {
        problem = "sample length differs from the shard index";
      }
    } catch (const ShardError& e) {
      problem = e.what();
    }
    if (problem.empty()) return true;
    const std::string what = "sample " + std::to_string(id) + " (shard " + reader->path() + ", byte " +
                             std::to_string(reader->offset(local)) + ", source " + sources_of(s, local) +
                             "): " + problem;
    if (o.on_corrupt == OnCorrupt::kFail) {
      throw LoaderError("data: " + what + "; run 'moxie data verify " + o.path +
                        "', or set data.on_corrupt=skip to train around damaged records");
    }
    const uint64_t n = ++skipped;
    log("data: skipped " + what + " (" + std::to_string(n) + " of at most " + std::to_string(o.max_skipped) + ")");
    if (n > o.max_skipped) {
      throw LoaderError("data: more than data.max_skipped=" + std::to_string(o.max_skipped) +
                        " damaged samples; stopping. Repair the dataset (moxie data verify " + o.path + ")");
    }
    return false;
  }

  PackedBatch fill(const Plan& plan) {
    PackedBatch b;
    b.rows = o.rows_per_rank;
    b.row_len = row_len;
    b.before = plan.before;
    b.after = plan.after;
    b.pieces = plan.pieces;
    const size_t n = static_cast<size_t>(b.rows * b.row_len);
    const auto& sp = info.special;
    b.tokens.assign(n, sp.pad);
    b.doc.assign(n, -1);
    b.kind.assign(n, kPadding);
    const int64_t p = info.image_patch, side = info.image_size / info.image_patch, C = info.image_channels;
    b.patch_dim = p * p * C;
    b.frame_dim = info.audio_frame;
    int32_t doc = 0;
    for (const auto& piece : plan.pieces) {
      if (b.sample_ids.empty() || b.sample_ids.back() != piece.sample) b.sample_ids.push_back(piece.sample);
      const auto held = get(piece.sample);
      if (!held) {
        if (b.skipped_ids.empty() || b.skipped_ids.back() != piece.sample) b.skipped_ids.push_back(piece.sample);
        continue;
      }
      const data::Sample& sample = *held;
      const int64_t base = piece.row * row_len + piece.col;
      const int32_t my_doc = doc++;
      uint32_t at = 0;  // position within the sample
      // A supervised fine-tuning sample (one with a context segment): only
      // its responses, and the EOS after a final response, are targets.
      bool sft = false, ends_in_response = false;
      for (const auto& seg : sample.segments()) {
        if (!seg.has_text()) continue;
        sft = sft || seg.text().context();
        ends_in_response = !seg.text().context();
      }
      const PositionKind marker = sft ? kContext : kToken;
      auto put_token = [&](int32_t token, PositionKind kind) {
        if (at >= piece.from && at < piece.to) {
          const size_t slot = static_cast<size_t>(base + (at - piece.from));
          b.tokens[slot] = token;
          b.doc[slot] = my_doc;
          b.kind[slot] = kind;
        }
        ++at;
      };
      auto put_media = [&](PositionKind kind, int64_t index, auto&& values) {
        if (at >= piece.from && at < piece.to) {
          const int64_t slot = base + (at - piece.from);
          b.doc[static_cast<size_t>(slot)] = my_doc;
          b.kind[static_cast<size_t>(slot)] = kind;
          if (kind == kImagePatch) {
            b.patch_slot.push_back(slot);
            b.patch_index.push_back(index);
            values(b.patches);
          } else {
            b.frame_slot.push_back(slot);
            b.frame_index.push_back(index);
            values(b.frames);
          }
        }
        ++at;
      };
      put_token(sp.bos, marker);
      for (const auto& seg : sample.segments()) {
        if (at >= piece.to) break;
        if (seg.has_text()) {
          // Only the part of the text inside the piece: O(piece), not O(sample).
          const auto& t = seg.text();
          const uint32_t len = text_length(t);
          const uint32_t lo = std::max(at, piece.from), hi = std::min(at + len, piece.to);
          if (lo < hi) {
            const size_t slot = static_cast<size_t>(base + (lo - piece.from));
            const auto* src = reinterpret_cast<const uint8_t*>(t.tokens().data());
            int32_t* dst = b.tokens.data() + slot;
            if (t.width() == 2) {
              for (uint32_t k = lo; k < hi; ++k, ++dst) {
                const uint8_t* q = src + 2 * (k - at);
                *dst = static_cast<int32_t>(q[0] | (q[1] << 8));
              }
            } else {
              for (uint32_t k = lo; k < hi; ++k) *dst++ = text_token(t, k - at);
            }
            std::fill(b.doc.begin() + static_cast<int64_t>(slot), b.doc.begin() + static_cast<int64_t>(slot + hi - lo), my_doc);
            std::fill(b.kind.begin() + static_cast<int64_t>(slot), b.kind.begin() + static_cast<int64_t>(slot + hi - lo),
                      t.context() ? kContext : kToken);
          }
          at += len;
        } else if (seg.has_image()) {
          const auto* px = reinterpret_cast<const uint8_t*>(seg.image().pixels().data());
          const int64_t S = info.image_size;
          put_token(sp.image_begin, marker);
          for (int64_t k = 0; k < side * side; ++k) {
            put_media(kImagePatch, k, [&](std::vector<float>& out) {
              const int64_t py = k / side, pxo = k % side;
              for (int64_t y = 0; y < p; ++y)
                for (int64_t x = 0; x < p; ++x)
                  for (int64_t c = 0; c < C; ++c)
                    out.push_back(px[((py * p + y) * S + pxo * p + x) * C + c] / 127.5f - 1.0f);
            });
          }
          put_token(sp.image_end, marker);
        } else if (seg.has_audio()) {
          const auto& pcm = seg.audio().pcm_s16le();
          const size_t samples = pcm.size() / 2;
          const size_t F = info.audio_frame;
          const size_t frames = (samples + F - 1) / F;
          put_token(sp.audio_begin, marker);
          for (size_t k = 0; k < frames; ++k) {
            put_media(kAudioFrame, static_cast<int64_t>(k), [&](std::vector<float>& out) {
              for (size_t i = 0; i < F; ++i) {
                const size_t j = k * F + i;
                int16_t v = 0;
                if (j < samples) std::memcpy(&v, pcm.data() + 2 * j, 2);
                out.push_back(static_cast<float>(v) / 32768.0f);
              }
            });
          }
          put_token(sp.audio_end, marker);
        }
      }
      put_token(sp.eos, !sft || ends_in_response ? kToken : kContext);
    }
    return b;
  }

  void worker() {
    while (true) {
      Plan plan;
      uint64_t ticket;
      {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return stop || next_ticket - consumed < max_in_flight; });
        if (stop) return;
        ticket = next_ticket++;
        plan = plan_next();
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
    : impl_(std::make_unique<Impl>()) {
  auto& I = *impl_;
  I.o = std::move(options);
  if (I.o.seq_len < 1 || I.o.rows_per_rank < 1 || I.o.dp_size < 1 || I.o.dp_rank < 0 ||
      I.o.dp_rank >= I.o.dp_size || I.o.shuffle_block < 1) {
    throw LoaderError("loader: seq_len, rows per rank, shuffle block and dp size must be positive, dp_rank below dp size");
  }
  I.row_len = I.o.seq_len + 1;
  I.open();
  I.cursor.seed = I.o.seed;
  I.cursor.manifest_sha256 = I.info.manifest_sha256;
  if (resume) {
    if (resume->manifest_sha256 != I.info.manifest_sha256) {
      throw LoaderError("the resume state was written for the dataset with manifest sha256 " +
                        resume->manifest_sha256 + ", but " + I.o.path + " has " + I.info.manifest_sha256 +
                        "; point data.path at the dataset the run was started with");
    }
    if (resume->seed != I.o.seed) {
      throw LoaderError("the resume state was written with seed " + std::to_string(resume->seed) +
                        ", this run has seed " + std::to_string(I.o.seed) + "; use the run's seed");
    }
    if (resume->position >= I.info.samples ||
        (resume->offset > 0 && resume->offset >= I.positions[I.sample_at(resume->epoch, resume->position)])) {
      throw LoaderError("the resume state " + resume->to_string() + " lies outside the dataset's " +
                        std::to_string(I.info.samples) + " samples");
    }
    I.cursor = *resume;
  }
  I.last = I.cursor;
  I.verify_requested.assign(I.readers.size(), 0);
  if (I.o.verify_shards && I.o.on_corrupt == OnCorrupt::kSkip)
    I.verify_thread = std::thread([&I] { I.verify_loop(); });
  I.ahead_thread = std::thread([&I] { I.read_ahead_loop(); });
  I.advise(I.sample_at(I.cursor.epoch, I.cursor.position));
  I.read_ahead();
  if (I.o.prefetch_threads > 0) {
    const uint64_t L = static_cast<uint64_t>(I.row_len * I.o.rows_per_rank);
    const uint64_t media = std::max<uint64_t>(I.info.image_patch * I.info.image_patch * I.info.image_channels,
                                              I.info.audio_frame);
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
  {
    std::lock_guard<std::mutex> lock(impl_->ahead_mutex);
    impl_->ahead_stop = true;
  }
  impl_->ahead_cv.notify_all();
  if (impl_->ahead_thread.joinable()) impl_->ahead_thread.join();
  {
    std::lock_guard<std::mutex> lock(impl_->verify_mutex);
    impl_->verify_stop = true;
  }
  impl_->verify_cv.notify_all();
  if (impl_->verify_thread.joinable()) impl_->verify_thread.join();
}

PackedBatch DatasetLoader::next() {
  auto& I = *impl_;
  Result r;
  if (I.workers.empty()) {
    Plan plan;
    {
      std::lock_guard<std::mutex> lock(I.m);
      plan = I.plan_next();
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
const DatasetInfo& DatasetLoader::info() const { return impl_->info; }
uint64_t DatasetLoader::skipped() const { return impl_->skipped.load(); }

}  // namespace moxie
