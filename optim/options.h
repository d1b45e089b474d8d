// Options of the optimizer and the learning-rate schedule.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace moxie {

// The decay after warmup, down to optim.min_lr (optim/schedule.h). The names,
// in the enum's order, are schedule.decay's values (core/config*.cpp).
enum class ScheduleDecay { kCosine, kLinear, kConstant };
constexpr std::array<const char*, 3> enum_names(ScheduleDecay) {
  return {"cosine", "linear", "constant"};
}
inline const char* to_string(ScheduleDecay v) { return enum_names(v)[static_cast<size_t>(v)]; }

struct OptimOptions {
  double lr = 3e-3;
  double min_lr = 3e-4;  // floor of the decay
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;      // not applied to norms, biases, embeddings
  double grad_clip = 1.0;         // global-norm clipping; 0: off
  bool decay_embeddings = false;  // apply weight decay to embeddings too
};

struct ScheduleOptions {
  int64_t warmup_steps = 100;  // linear warmup from 0 to optim.lr
  ScheduleDecay decay = ScheduleDecay::kCosine;
  int64_t decay_steps = 0;  // 0: train.steps - warmup_steps
};

}  // namespace moxie
