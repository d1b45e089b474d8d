// `moxie plan --materialize-rank R`: builds rank R's shard of a model that is
// far too large for this machine, piece by piece (embedding, each block, the
// head), runs each piece's forward and backward on a small batch with the other
// ranks simulated (parallel/simulated_communicator.h), takes one optimizer
// step on the parameters whose ZeRO-1 state rank R keeps, and measures the
// bytes of what it built against `moxie plan`'s figures. No other rank's
// weights are ever allocated, and at most one piece's are alive at a time.
// With PlanOptions::materialize_blocks, only the first blocks are built; each
// later one is checked against the plan by the names and sizes of a built
// block of its kind and counted with that block's measured bytes (its
// optimizer state where this rank keeps it by the plan's ZeRO-1 owners).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "core/config/config.h"
#include "core/plan/plan.h"

namespace moxie {

struct MaterializeReport {
  int64_t params = 0;              // elements of rank R's shard, as built
  double param_bytes = 0;          // of the parameters as built
  double grad_bytes = 0;           // of the gradients backward produced
  double optimizer_bytes = 0;      // of AdamW's state after one step
  double peak_resident_bytes = 0;  // of this process (VmHWM)
  double alltoall_bytes = 0;       // payload the EP all-to-alls would send (forward + backward)
                                   // through the blocks built
  int64_t blocks_built = 0;        // PlanOptions::materialize_blocks, or all
  int64_t shape_mismatches = 0;    // parameters whose name or size differs from the plan's
};

MaterializeReport materialize_rank(const Config& config, const PlanOptions& options,
                                   std::ostream& log);

// A table of planned against measured bytes, with the relative difference.
std::string compare_with_plan(const Plan& plan, const MaterializeReport& measured);

}  // namespace moxie
