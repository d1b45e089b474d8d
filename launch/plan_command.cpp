// moxie plan: the plan of a layout (core/plan/plan.h), and with --materialize-rank
// one rank's shard built and compared with it (core/plan/materialize.h).
#include "launch/plan_command.h"

#include <iostream>
#include <string>

#include "core/config/config.h"
#include "core/plan/materialize.h"
#include "core/plan/plan.h"
#include "launch/cli_args.h"

namespace moxie::cli {

int plan_command(int argc, char** argv) {
  const auto inv = parse_args("plan", argc, argv);
  if (!inv.world_given) throw UsageError("'moxie plan' needs --world N, the number of ranks");
  const auto config = moxie::load_config(inv.config_path, inv.overrides);
  if (inv.plan.rank >= inv.plan.world) {
    throw UsageError("rank " + std::to_string(inv.plan.rank) + " is not in a job of --world " +
                     std::to_string(inv.plan.world) + " ranks");
  }
  const auto plan = moxie::make_plan(config, inv.plan);
  std::cout << moxie::describe(config, inv.plan, plan);
  if (inv.materialize) {
    const auto m = moxie::materialize_rank(config, inv.plan, std::cout);
    std::cout << moxie::compare_with_plan(plan, m);
    return m.shape_mismatches == 0 ? 0 : 1;
  }
  return 0;
}

}  // namespace moxie::cli
