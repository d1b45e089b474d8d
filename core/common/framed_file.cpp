// Atomically written, checksummed metadata files.
#include "core/common/framed_file.h"

#include <cstring>

#include "core/common/crc32c.h"
#include "core/common/file_io.h"

namespace moxie {

void write_framed_file(const std::string& path, const char magic[8], uint32_t version,
                       const std::string& payload) {
  std::string bytes(magic, 8);
  char fields[16];
  const uint64_t size = payload.size();
  const uint32_t crc = crc32c(payload.data(), payload.size());
  std::memcpy(fields, &version, 4);
  std::memcpy(fields + 4, &size, 8);
  std::memcpy(fields + 12, &crc, 4);
  bytes.append(fields, 16);
  bytes += payload;
  try {
    write_file_atomically(path, bytes, "file");
  } catch (const FileError& e) {
    throw FramedFileError(e.what());
  }
}

std::string read_framed_file(const std::string& path, const char magic[8], uint32_t version) {
  std::string bytes;
  try {
    bytes = read_small_file(path, std::string(magic, 8) + " file", kMaxFramedBytes);
  } catch (const FileError& e) {
    throw FramedFileError(e.what());
  }
  if (bytes.size() < 24 || std::memcmp(bytes.data(), magic, 8) != 0) {
    throw FramedFileError(path + " is not a " + std::string(magic, 8) +
                          " file (bad magic or truncated)");
  }
  uint32_t got_version, crc;
  uint64_t size;
  std::memcpy(&got_version, bytes.data() + 8, 4);
  std::memcpy(&size, bytes.data() + 12, 8);
  std::memcpy(&crc, bytes.data() + 20, 4);
  if (got_version != version) {
    throw FramedFileError(path + ": format version " + std::to_string(got_version) + " is not " +
                          std::to_string(version));
  }
  if (size != bytes.size() - 24 || crc32c(bytes.data() + 24, size) != crc) {
    throw FramedFileError(path + ": checksum mismatch or truncated at byte 24");
  }
  return bytes.substr(24);
}

}  // namespace moxie
