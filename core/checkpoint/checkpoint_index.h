// Checkpoint folders on disk, without torch or protobuf in the header:
//   RUN/checkpoints/step-00000120/
//     rank-00000.safetensors ...  each rank's tensors (boxes of global tensors)
//                                 and, in its metadata, the rank's own state
//     index.pb                    rank 0: every global tensor and its pieces
//     COMMITTED                   written last; a folder without it is never loaded
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace moxie {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CheckpointPiece {
  int rank = 0;
  std::string file, name;
  std::vector<int64_t> start, shape;
  uint32_t crc32c = 0;
};

struct CheckpointTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<CheckpointPiece> pieces;
};

// A rank's file as committed: its size and its prefix (8-byte length and
// JSON header, which holds the dtypes, shapes, offsets, piece table and the
// rank's state) with its CRC32C. Any change to the header after the commit
// is damage.
struct CheckpointFile {
  std::string name;
  uint64_t file_bytes = 0, header_bytes = 0;
  uint32_t header_crc32c = 0;
};

struct CheckpointIndex {
  int64_t step = 0;
  std::string layout;
  int world = 1;
  std::vector<CheckpointTensor> tensors;
  std::vector<std::string> rank_files;
  // Index = rank. Empty for an index of format version 1 (written before
  // headers were checksummed): its files' headers are then not checked.
  std::vector<CheckpointFile> files;
  uint32_t format_version = 0;  // as read
};

// Format version written; version 1 (no header checksums) is still read.
constexpr uint32_t kCheckpointFormatVersion = 2;
// Stated limits on what an index may describe, checked before anything is
// sized by it.
constexpr uint64_t kMaxCheckpointWorld = 1u << 20;
constexpr uint64_t kMaxTensorDims = 32;
constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;  // the format's reference limit

constexpr const char* kCommitMarker = "COMMITTED";
constexpr const char* kIndexName = "index.pb";

// "RUN/checkpoints/step-00000120".
std::string checkpoint_dir(const std::string& run_dir, int64_t step);
// Committed checkpoints under run_dir/checkpoints, oldest first.
std::vector<std::string> committed_checkpoints(const std::string& run_dir);
bool is_committed(const std::string& dir);

// index.pb, then COMMITTED, each written atomically (temporary file, fsync,
// rename, fsync of the folder). CheckpointError naming the file if the disk
// refuses; nothing committed then.
void commit_checkpoint(const std::string& dir, const CheckpointIndex& index);
// CheckpointError naming the file and the field if it is missing, truncated
// or damaged, or describes what cannot be: a piece outside its tensor or
// past its file's end, a file outside the folder, a rank beyond the world,
// an unknown dtype, more dimensions or ranks than the limits above.
CheckpointIndex read_checkpoint_index(const std::string& dir);

// A rank file's size and header checksum, read from disk (at commit).
CheckpointFile describe_rank_file(const std::string& dir, const std::string& name);
// The rank file of `rank`, resolved inside `dir`, checked against the index:
// its size, header length and header checksum (version 1: size unchecked,
// header not checked). CheckpointError naming the folder, file and mismatch.
std::string checked_rank_file(const std::string& dir, const CheckpointIndex& index, int rank);
// "" when `dir` is committed, its index reads and every rank file's header
// matches the index; otherwise why not (tensor bytes are checked on load).
std::string checkpoint_damage(const std::string& dir);

// Keeps the newest `keep` (at least 1) committed checkpoints that
// checkpoint_damage() passes; removes older ones (damaged or not), and
// folders never committed that are older than the newest committed one. A
// damaged checkpoint newer than the oldest kept one stays (for inspection)
// and never counts towards `keep`.
void prune_checkpoints(const std::string& run_dir, int keep);

uint32_t checksum(const void* data, size_t n);  // CRC32C

}  // namespace moxie
