// Options of the parallel layout: world = pp * dp * tp, ep divides dp * tp.
#pragma once

#include <cstdint>

namespace moxie {

struct ParallelOptions {
  int64_t dp = 1;
  int64_t tp = 1;
  int64_t ep = 1;
  int64_t pp = 1;  // pipeline parallelism is not implemented: must be 1
};

}  // namespace moxie
