// libFuzzer target: arbitrary bytes as a shard file. Opening and reading every
// sample must end in a ShardError or a sample, never a crash, a hang or an
// out-of-bounds access (built with AddressSanitizer and UBSan).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/shard_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    char name[] = "/tmp/moxie-fuzz-shard-XXXXXX";
    const int fd = mkstemp(name);
    if (fd < 0) std::abort();
    close(fd);
    return std::string(name);
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  try {
    moxie::ShardReader reader(path);
    for (size_t i = 0; i < reader.size(); ++i) {
      (void)reader.positions(i);
      (void)reader.keep_whole(i);
      (void)reader.sources(i);
      try {
        (void)reader.read(i);
      } catch (const moxie::ShardError&) {
      }
    }
  } catch (const moxie::ShardError&) {
  }
  return 0;
}
