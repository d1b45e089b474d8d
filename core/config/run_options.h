// Options of the run itself: the training loop's steps, batch, precision,
// checkpoints and resume, and fine-tuning from a base checkpoint. Plain
// structs, no torch; they belong to the config because every part of a run
// reads them (core/train, core/checkpoint, launch/).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moxie {

// Each choice's names, in the enum's order, are the values its config key
// takes (core/config/config.cpp reads them, config_to_yaml.cpp writes them).

// train.device: the CPU, or one GPU per rank (device = the rank's local rank).
enum class DeviceKind { kCpu, kCuda };
constexpr std::array<const char*, 2> enum_names(DeviceKind) { return {"cpu", "cuda"}; }
inline const char* to_string(DeviceKind v) { return enum_names(v)[static_cast<size_t>(v)]; }

// train.dtype: of parameters and compute; master weights stay float32.
enum class TrainDtype { kFloat32, kBFloat16 };
constexpr std::array<const char*, 2> enum_names(TrainDtype) { return {"float32", "bfloat16"}; }
inline const char* to_string(TrainDtype v) { return enum_names(v)[static_cast<size_t>(v)]; }

struct TrainOptions {
  int64_t steps = 1000;
  int64_t micro_batch_size = 16;  // sequences per micro-batch
  int64_t grad_accum = 1;         // micro-batches per optimizer step
  int64_t eval_every = 100;       // 0: only at the end
  int64_t eval_batches = 8;
  int64_t log_every = 10;
  int64_t seed = 1234;
  std::string run_dir = "runs/tiny";
  DeviceKind device = DeviceKind::kCpu;
  TrainDtype dtype = TrainDtype::kFloat32;
  int64_t threads = 0;  // intra-op threads; 0: all cores
  // Checkpoints in run_dir/checkpoints (core/checkpoint/checkpoint.h): every N steps,
  // at the end and on SIGTERM/SIGINT; 0: none.
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 3;  // committed checkpoints kept
  int64_t stop_at = 0;           // save and stop after this step (a job's time slot); 0: never
  // auto: from the run folder's latest committed checkpoint if there is one;
  // latest: that, required; none: start fresh; or a checkpoint folder.
  std::string resume = "auto";
  // A step whose loss or gradient is NaN or Inf is skipped (no update,
  // counted and logged); this many such steps in a row stop the run.
  int64_t max_nonfinite_steps = 5;
};

// Fine-tuning from a pretrained checkpoint (configs/recipes/).
struct FinetuneOptions {
  // A committed checkpoint folder (moxie's own, or what `moxie import --hf`
  // made): its weights start the run (optimizer fresh, step 0, any layout),
  // and its run's config.yaml gives the model and moe sections. "": none.
  std::string base;
  // Parameters kept at their starting values: "router" (every MoE gate),
  // "experts" (the routed experts), or any part of a parameter's name.
  std::vector<std::string> freeze;
  double router_lr = 1.0;  // the routers' learning rate, as a multiple of the schedule's
  int64_t early_stop_patience =
      0;  // stop after this many evaluations without a lower eval loss; 0: never
};

}  // namespace moxie
