// Allocation policy.
#include "core/common/allocator.h"

#include <malloc.h>

#include <cstdlib>

#include "core/common/env.h"

namespace moxie {

void keep_freed_memory_for_reuse() {
  if (std::getenv(env::kMallocDefault)) return;
  mallopt(M_MMAP_MAX, 0);              // large blocks from the heap, not per-call mmap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // and keep up to 1 GiB of freed heap for reuse
}

}  // namespace moxie
