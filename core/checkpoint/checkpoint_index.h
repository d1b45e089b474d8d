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

struct CheckpointIndex {
  int64_t step = 0;
  std::string layout;
  int world = 1;
  std::vector<CheckpointTensor> tensors;
  std::vector<std::string> rank_files;
};

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
// CheckpointError naming the file if it is missing, truncated or damaged.
CheckpointIndex read_checkpoint_index(const std::string& dir);
// Removes all but the newest `keep` committed checkpoints, and folders that
// were never committed and are older than the newest committed one.
void prune_checkpoints(const std::string& run_dir, int keep);

uint32_t checksum(const void* data, size_t n);  // CRC32C

}  // namespace moxie
