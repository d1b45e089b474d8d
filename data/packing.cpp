// Packing for the dataset loader: the global layout of each batch's rows, and
// this rank's rows filled from their samples.
#include "data/packing.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "data/manifest.h"

namespace moxie {

PackingPlanner::PackingPlanner(const LoaderOptions& options, const ShardSet& shards,
                               std::function<void(uint64_t id)> advise)
    : o_(options),
      shards_(shards),
      advise_(std::move(advise)),
      row_len_(options.seq_len + 1),
      order_(shards.info.samples, options.seed, options.shuffle_block) {
  cursor_.seed = o_.seed;
  cursor_.manifest_sha256 = shards_.info.manifest_sha256;
}

uint64_t PackingPlanner::sample_at(uint64_t epoch, uint64_t position) {
  if (epoch != cached_epoch_) {
    epoch_key_ = order_.epoch(epoch);
    cached_epoch_ = epoch;
  }
  return order_.sample_at(epoch_key_, position);
}

void PackingPlanner::start_read_ahead() {
  advise_(sample_at(cursor_.epoch, cursor_.position));
  read_ahead();
}

void PackingPlanner::advance() {
  cursor_.offset = 0;
  if (++cursor_.position == shards_.info.samples) {
    cursor_.position = 0;
    ++cursor_.epoch;
  }
  if (cursor_.position % o_.shuffle_block == 0) read_ahead();
}

// Entering a block of positions: have the kernel read the next block's
// samples now, so that they are in memory when the walk gets there.
void PackingPlanner::read_ahead() {
  uint64_t e = cursor_.epoch, p = cursor_.position + o_.shuffle_block;
  if (p >= shards_.info.samples) {
    p -= shards_.info.samples;
    ++e;
  }
  if (p < shards_.info.samples) advise_(order_.sample_at(order_.epoch(e), p));
}

BatchPlan PackingPlanner::next() {
  BatchPlan plan;
  plan.before = cursor_;
  const int64_t rows = o_.rows_per_rank * o_.dp_size;
  for (int64_t r = 0; r < rows; ++r) {
    const bool mine = r / o_.rows_per_rank == o_.dp_rank;
    int64_t col = 0;
    while (col < row_len_) {
      const uint64_t id = sample_at(cursor_.epoch, cursor_.position);
      const uint64_t len = shards_.positions[id];
      if (len == 0) {  // in a shard that could not be opened
        advance();
        continue;
      }
      if (cursor_.offset == 0 && col > 0 && shards_.whole[id] &&
          static_cast<int64_t>(len) <= row_len_ && static_cast<int64_t>(len) > row_len_ - col) {
        break;  // samples with media or an SFT prompt start on a fresh row
      }
      const uint64_t take =
          std::min<uint64_t>(len - cursor_.offset, static_cast<uint64_t>(row_len_ - col));
      if (mine) {
        plan.pieces.push_back({id, static_cast<uint32_t>(cursor_.offset),
                               static_cast<uint32_t>(cursor_.offset + take),
                               r - o_.dp_rank * o_.rows_per_rank, col});
      }
      col += static_cast<int64_t>(take);
      cursor_.offset += take;
      if (cursor_.offset == len) advance();
    }
  }
  ++cursor_.batches;
  plan.after = cursor_;
  return plan;
}

PackedBatch fill_batch(const BatchPlan& plan, int64_t rows, int64_t row_len,
                       const DatasetInfo& info, SampleCache& samples) {
  PackedBatch b;
  b.rows = rows;
  b.row_len = row_len;
  b.before = plan.before;
  b.after = plan.after;
  b.pieces = plan.pieces;
  const size_t n = static_cast<size_t>(b.rows * b.row_len);
  const auto& sp = info.special;
  b.tokens.assign(n, sp.pad);
  b.doc.assign(n, -1);
  b.kind.assign(n, kPadding);
  const int64_t p = info.image_patch, side = info.image_size / info.image_patch,
                C = info.image_channels;
  b.patch_dim = p * p * C;
  b.frame_dim = info.audio_frame;
  int32_t doc = 0;
  for (const auto& piece : plan.pieces) {
    if (b.sample_ids.empty() || b.sample_ids.back() != piece.sample)
      b.sample_ids.push_back(piece.sample);
    const auto held = samples.get(piece.sample);
    if (!held) {
      if (b.skipped_ids.empty() || b.skipped_ids.back() != piece.sample)
        b.skipped_ids.push_back(piece.sample);
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
          std::fill(b.doc.begin() + static_cast<int64_t>(slot),
                    b.doc.begin() + static_cast<int64_t>(slot + hi - lo), my_doc);
          std::fill(b.kind.begin() + static_cast<int64_t>(slot),
                    b.kind.begin() + static_cast<int64_t>(slot + hi - lo),
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

}  // namespace moxie
