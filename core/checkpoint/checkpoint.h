// Sharded checkpoints: each rank writes its boxes of the global tensors (its
// parameters, optimizer state, RNG) to its own safetensors file, on a
// background thread; rank 0 then writes the index (core/checkpoint/checkpoint_index.h)
// and the commit marker. Loading fills any rank's boxes from the pieces that
// overlap them, so a checkpoint can be read back at another layout.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/checkpoint/checkpoint_index.h"
#include "core/config/config.h"
#include "core/model/transformer.h"

namespace moxie {

// One tensor this rank saves or restores: its box of a global tensor.
struct CheckpointEntry {
  std::string name;            // global name
  torch::Tensor tensor;        // this rank's box (restored in place)
  std::vector<int64_t> start;  // the box's offset in the global tensor
  std::vector<int64_t> global_shape;
  bool write = true;  // this rank stores it (others hold equal copies)
};

// Each save lays the rank's file out in one staging buffer (4096-byte
// aligned, kept between saves, as large as the rank's state): the tensors are
// copied into it at their offsets in the file, then a background thread writes
// it with O_DIRECT while a second one computes the checksums.
class CheckpointWriter {
 public:
  CheckpointWriter(std::string run_dir, int rank);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Copies every entry it writes now (the only part the training thread
  // waits for) and writes the rank's file on a background thread. A write
  // still in flight is finished first.
  // background: the write runs below training in the scheduler (nice 19);
  // else at normal priority (a save that is waited for anyway).
  void start(int64_t step, const std::vector<CheckpointEntry>& entries,
             const std::map<std::string, std::string>& state, bool background = true);
  // Waits for the write in flight; "" when it succeeded (or none was in
  // flight), else the error. pending() is its step, -1 when none.
  std::string finish();
  int64_t pending() const { return pending_; }
  // The write in flight has ended (finish() will not wait).
  bool written() const { return done_.load(); }
  // Of the last save: seconds training waited for the copy, seconds the
  // background write took, bytes written.
  double copy_seconds() const { return copy_s_; }
  double write_seconds() const { return write_s_; }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> buffer_;
  uint64_t capacity_ = 0;
  std::atomic<bool> done_{true};
  double copy_s_ = 0, write_s_ = 0;
  uint64_t bytes_ = 0;
  std::string run_dir_;
  int rank_;
  std::thread thread_;
  std::string error_;
  int64_t pending_ = -1;
};

// Rank 0, once every rank's finish() succeeded: reads the ranks' files
// (headers and piece tables), writes the index and the commit marker, and
// keeps the newest `keep` committed checkpoints.
void commit_from_ranks(const std::string& run_dir, int64_t step, int world,
                       const std::string& layout, int keep);

// Fills every entry from the committed checkpoint in `dir`, whatever layout
// it was saved at; CheckpointError naming the file when a piece's checksum
// does not match, a file is truncated, or part of a tensor is missing.
// Returns this rank's saved state when the checkpoint has this rank and
// world size, else rank 0's.
std::map<std::string, std::string> load_checkpoint(const std::string& dir,
                                                   std::vector<CheckpointEntry>& entries, int rank,
                                                   int world);

// A committed checkpoint's weights in a single-process model, with the run's
// config (RUN/config.yaml beside RUN/checkpoints/).
struct LoadedModel {
  Config config;
  CausalLM model{nullptr};
  int64_t step = 0;
};
LoadedModel load_model(const std::string& checkpoint_dir);

// A weights-only checkpoint (step 0, no optimizer state) of a single-process
// model in run_dir, with run_dir/config.yaml: what `moxie import` makes, and
// what training resumes from with a fresh optimizer at any layout.
std::string write_weights_checkpoint(CausalLM& model, Config config, const std::string& run_dir);

}  // namespace moxie
