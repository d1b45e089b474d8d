// `moxie plan CONFIG --world N [--rank R | --materialize-rank R] ...`: the
// planned parameters, per-rank memory, FLOPs and traffic of a layout; with
// --materialize-rank, rank R's shard built here and measured against the plan.
#pragma once

namespace moxie::cli {

// argv as given to `moxie plan ...`. Returns the exit code (1 if the built
// shard's shapes differ from the plan); throws UsageError for a bad command
// line, ConfigError or LayoutError for a bad config or layout.
int plan_command(int argc, char** argv);

}  // namespace moxie::cli
