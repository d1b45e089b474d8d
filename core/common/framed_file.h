// Small metadata files written whole and checked whole:
//   8-byte magic | u32 format version | u64 payload bytes | u32 crc32c(payload) | payload
// (little-endian), written atomically through OutputFile (file_io.h). A dataset's manifest.pb and a
// checkpoint's index.pb are such files. Torch- and protobuf-free.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace moxie {

class FramedFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The largest framed file read (a manifest of millions of shards is far below).
constexpr uint64_t kMaxFramedBytes = uint64_t{1} << 30;

// FramedFileError naming the file and the system's reason; the target is
// then untouched (no partial file).
void write_framed_file(const std::string& path, const char magic[8], uint32_t version,
                       const std::string& payload);
// The payload; FramedFileError naming the file if it is missing, not of this
// kind (magic), of another version, truncated or damaged.
std::string read_framed_file(const std::string& path, const char magic[8], uint32_t version);

}  // namespace moxie
