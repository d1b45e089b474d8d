// layout_of: the one place a config's parallel section is validated against
// the world size and the model's sizes (experts, heads, vocabulary, FFN
// widths, sequence). The launcher calls it once; the process groups carry
// the result (ProcessGroups::dims) to everything else.
#pragma once

#include <cstdint>

#include "core/config/config.h"
#include "parallel/parallel_dims.h"

namespace moxie {

// Throws LayoutError (parallel/parallel_dims.h) naming what does not divide.
ParallelDims layout_of(const Config& config, int64_t world);

}  // namespace moxie
