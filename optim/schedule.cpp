// Learning-rate schedule.
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

namespace moxie {

double lr_at(const OptimOptions& optim, const ScheduleOptions& schedule, int64_t step,
             int64_t total_steps) {
  const ScheduleDecay decay = schedule.decay;
  const int64_t warmup = schedule.warmup_steps;
  if (step < warmup) return optim.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (decay == ScheduleDecay::kConstant) return optim.lr;
  const int64_t decay_steps =
      schedule.decay_steps > 0 ? schedule.decay_steps : std::max<int64_t>(1, total_steps - warmup);
  const double p = std::min(1.0, static_cast<double>(step - warmup) / decay_steps);
  if (decay == ScheduleDecay::kLinear) return optim.lr + (optim.min_lr - optim.lr) * p;
  const double pi = std::acos(-1.0);
  return optim.min_lr + (optim.lr - optim.min_lr) * 0.5 * (1.0 + std::cos(pi * p));
}

}  // namespace moxie
