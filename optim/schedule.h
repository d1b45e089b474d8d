// Learning-rate schedule: linear warmup, then cosine, linear or no decay.
#pragma once

#include <cstdint>

#include "optim/options.h"

namespace moxie {

// The learning rate for 0-based `step` of a run of `total_steps`:
//   warmup (step < W):  lr * (step + 1) / W
//   decay over D = decay_steps (or total_steps - W) steps, p = (step - W) / D:
//     cosine: min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2
//     linear: lr + (min_lr - lr) * p
//     constant: lr
//   after the decay: min_lr (constant: lr)
double lr_at(const OptimOptions& optim, const ScheduleOptions& schedule, int64_t step,
             int64_t total_steps);

}  // namespace moxie
