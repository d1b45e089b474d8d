// CRC32C (Castagnoli), the checksum of every shard record: SSE4.2's crc32
// instruction where the CPU has it, a table otherwise (same values).
#pragma once

#include <cstddef>
#include <cstdint>

namespace moxie {

// crc32c of `n` bytes, continuing from `crc` (0 for a fresh checksum).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace moxie
