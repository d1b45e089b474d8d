// CRC32C: SSE4.2's crc32 instruction where the CPU has it (checked at run
// time), three independent streams interleaved so that the instruction's
// latency is hidden; else a byte table. Both give the same values.
#include "core/common/crc32c.h"

#include <array>
#include <cstring>

namespace moxie {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // Castagnoli, reflected

std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}

const std::array<uint32_t, 256>& table() {
  static const auto t = make_table();
  return t;
}

#if defined(__x86_64__)
// The CRC register after `len` zero bytes, as a function of the register
// before them: linear over GF(2), so one table per byte of the register.
struct ZerosOperator {
  uint32_t t[4][256];
  explicit ZerosOperator(size_t len) {
    const auto& tab = table();
    uint32_t basis[32];
    for (int b = 0; b < 32; ++b) {
      uint32_t r = 1u << b;
      for (size_t i = 0; i < len; ++i) r = tab[r & 0xFF] ^ (r >> 8);
      basis[b] = r;
    }
    for (int k = 0; k < 4; ++k) {
      for (uint32_t v = 0; v < 256; ++v) {
        uint32_t r = 0;
        for (int j = 0; j < 8; ++j) {
          if (v >> j & 1) r ^= basis[8 * k + j];
        }
        t[k][v] = r;
      }
    }
  }
  uint32_t operator()(uint32_t crc) const {
    return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24];
  }
};

// Three lanes of this many bytes each per round: long rounds for records,
// short ones for what is left.
constexpr size_t kLong = 8192, kShort = 256;

const ZerosOperator& long_zeros() {
  static const ZerosOperator op(kLong);
  return op;
}
const ZerosOperator& short_zeros() {
  static const ZerosOperator op(kShort);
  return op;
}

__attribute__((target("sse4.2"))) uint64_t crc32c_lanes(uint64_t c0, const uint8_t*& p, size_t& n,
                                                        size_t L, const ZerosOperator& zeros) {
  while (n >= 3 * L) {
    uint64_t c1 = 0, c2 = 0;
    const uint8_t* end = p + L;
    do {
      uint64_t w0, w1, w2;
      std::memcpy(&w0, p, 8);
      std::memcpy(&w1, p + L, 8);
      std::memcpy(&w2, p + 2 * L, 8);
      c0 = __builtin_ia32_crc32di(c0, w0);
      c1 = __builtin_ia32_crc32di(c1, w1);
      c2 = __builtin_ia32_crc32di(c2, w2);
      p += 8;
    } while (p < end);
    // Register over lane 0 and 1 = lane 0's shifted past L zero bytes, plus lane 1's from zero.
    c0 = zeros(static_cast<uint32_t>(c0)) ^ c1;
    c0 = zeros(static_cast<uint32_t>(c0)) ^ c2;
    p += 2 * L;
    n -= 3 * L;
  }
  return c0;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const uint8_t* p, size_t n, uint32_t crc) {
  uint64_t c = static_cast<uint32_t>(~crc);
  for (; n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0; --n, ++p) {
    c = __builtin_ia32_crc32qi(static_cast<uint32_t>(c), *p);
  }
  if (n >= 3 * kShort) {
    c = crc32c_lanes(c, p, n, kLong, long_zeros());
    c = crc32c_lanes(c, p, n, kShort, short_zeros());
  }
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return ~c32;
}
#endif

}  // namespace

uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  const auto& t = table();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = t[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

bool crc32c_hardware() {
#if defined(__x86_64__)
  static const bool hardware = __builtin_cpu_supports("sse4.2");
  return hardware;
#else
  return false;
#endif
}

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
#if defined(__x86_64__)
  if (crc32c_hardware()) return crc32c_sse42(static_cast<const uint8_t*>(data), n, crc);
#endif
  return crc32c_portable(data, n, crc);
}

}  // namespace moxie
