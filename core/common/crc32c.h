// CRC32C (Castagnoli), the checksum of every shard record: SSE4.2's crc32
// instruction where the CPU has it (three interleaved streams), a table
// otherwise (same values).
#pragma once

#include <cstddef>
#include <cstdint>

namespace moxie {

// crc32c of `n` bytes, continuing from `crc` (0 for a fresh checksum).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// The table form crc32c() falls back to, whatever the CPU; the hardware form
// is tested against it.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);
// Whether crc32c() uses the CPU's crc32 instruction here.
bool crc32c_hardware();

}  // namespace moxie
