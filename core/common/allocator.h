// Process-wide memory allocation policy for training.
#pragma once

namespace moxie {

// Makes glibc's malloc keep freed memory for reuse instead of returning large
// blocks to the kernel: every large tensor (activations, gradients,
// all-to-all buffers) is otherwise a fresh mmap whose pages fault in again on
// first touch, every step. Measured in tests/bench/RESULTS.md. Call once at
// start-up, before large allocations; MOXIE_MALLOC_DEFAULT=1 keeps glibc's
// defaults.
void keep_freed_memory_for_reuse();

}  // namespace moxie
