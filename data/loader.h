// The dataset loader: samples in the order SampleOrder gives (a pure function
// of seed, epoch and position), packed into rows of seq_len + 1 model
// positions, this data-parallel rank's rows of each global batch, filled by
// background threads within a memory budget, resumable from a small state.
//
// Packing is global: the rows of a global batch are laid out from the
// samples' lengths alone (kept in the shard indices), the same on every rank
// and for every number of ranks; each rank then reads only the samples in its
// own rows. A text sample may continue in the next row; a sample with images
// or audio that fits in a row but not in what is left of the current one
// starts the next row (the rest is padding). Each piece of a sample in a row
// is its own document: attention stays inside it.
//
// Torch- and protobuf-free: the trainer's side is data/dataset_source.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/options.h"
#include "data/tokenizer.h"

namespace moxie {

class LoaderError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LoaderOptions {
  std::string path;  // dataset folder (manifest.pb and shards)
  uint64_t seed = 0;
  int64_t seq_len = 128;      // a row holds seq_len + 1 positions (inputs and targets)
  int64_t rows_per_rank = 1;  // rows of each global batch this rank gets
  int64_t dp_rank = 0, dp_size = 1;
  uint64_t shuffle_block = 256;  // samples read together (see data/sample_order.h)
  // 0 (the default): batches are read on the caller's thread, beside the
  // read-ahead thread; on 2 cores more threads only slow it (tests/bench/RESULTS.md).
  int prefetch_threads = 0;
  uint64_t prefetch_bytes = 256ull << 20;  // at most this much of read-ahead batches
  OnCorrupt on_corrupt = OnCorrupt::kSkip;
  uint64_t max_skipped = 100;  // skips allowed before the run stops
  // sha256 of each shard the first time it is read. Off by default: every
  // record, the index and the trailer carry their own CRC32C, checked as read,
  // and under on_corrupt=skip a hash mismatch is only logged; on, it costs
  // one more full pass over each shard (moxie data verify does the same).
  bool verify_shards = false;
  // Where skip messages go (default: standard error).
  std::function<void(const std::string&)> log;
};

// Where the stream stands before a global batch: everything needed to go on
// exactly from there, on any number of ranks.
struct LoaderState {
  uint64_t seed = 0;
  uint64_t epoch = 0, position = 0;                   // next sample: position in the epoch's order
  uint64_t offset = 0;                                // positions of that sample already used
  uint64_t batches = 0;                               // global batches consumed
  std::string manifest_sha256;                        // hex
  std::string to_string() const;                      // one line, "key=value ..."
  static LoaderState parse(const std::string& line);  // LoaderError if malformed
  bool operator==(const LoaderState& o) const;
};

// Kinds of model position.
// kContext: a token that is input only, never a loss target (an SFT sample's
// prompt, its media markers).
enum PositionKind : uint8_t {
  kPadding = 0,
  kToken = 1,
  kImagePatch = 2,
  kAudioFrame = 3,
  kContext = 4
};

struct PackedBatch {
  int64_t rows = 0, row_len = 0;
  std::vector<int32_t> tokens;  // [rows * row_len]; pad id where not a token
  std::vector<int32_t> doc;     // document per position, unique within the batch; -1: padding
  std::vector<uint8_t> kind;    // PositionKind per position
  // Image patches in the order they occur: values in [-1, 1], (y, x, channel)
  // within the patch; slot = row * row_len + column; index = the patch's
  // number within its image (row-major).
  int64_t patch_dim = 0;
  std::vector<float> patches;
  std::vector<int64_t> patch_slot, patch_index;
  // Audio frames: audio_frame samples in [-1, 1] (zero-padded at the end).
  int64_t frame_dim = 0;
  std::vector<float> frames;
  std::vector<int64_t> frame_slot, frame_index;
  // Which positions of which sample lie where in this rank's rows.
  struct Piece {
    uint64_t sample;
    uint32_t from, to;  // positions [from, to) of the sample
    int64_t row, col;
  };
  std::vector<Piece> pieces;
  std::vector<uint64_t> sample_ids;   // samples with a piece in this rank's rows
  std::vector<uint64_t> skipped_ids;  // of those, records that were damaged and skipped
  LoaderState before, after;          // the global stream around this batch
  uint64_t bytes() const;
};

struct DatasetInfo {
  uint64_t samples = 0, bytes = 0;
  std::string manifest_sha256, tokenizer;
  SpecialIds special;
  uint32_t image_size = 0, image_patch = 0, image_channels = 0, audio_frame = 0,
           audio_sample_rate = 0;
  uint64_t images = 0, audio_clips = 0;
};

// The manifest alone (no shard is opened). LoaderError naming the folder and
// the fix if there is no intact manifest.
DatasetInfo read_dataset_info(const std::string& path);

class DatasetLoader {
 public:
  // Opens the manifest and every shard's header and index. LoaderError naming
  // the file and the fix for a missing or damaged dataset, or a resume state
  // from another dataset or seed.
  explicit DatasetLoader(LoaderOptions options, const LoaderState* resume = nullptr);
  ~DatasetLoader();
  DatasetLoader(const DatasetLoader&) = delete;
  DatasetLoader& operator=(const DatasetLoader&) = delete;

  // This rank's rows of the next global batch.
  PackedBatch next();
  // The state after the last batch next() returned (before the first: the start).
  LoaderState state() const;
  const DatasetInfo& info() const;
  uint64_t skipped() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moxie
