// Atomically written, checksummed metadata files.
#include "core/common/framed_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/common/crc32c.h"

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
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw FramedFileError("cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  int error = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (!error && ::fsync(fd) != 0) error = errno;
  ::close(fd);
  if (!error && std::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (error) {
    ::unlink(tmp.c_str());
    throw FramedFileError("cannot write " + path + ": " + std::strerror(error));
  }
  const auto folder = std::filesystem::path(path).parent_path();
  const int dir = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);  // the rename survives a crash; the file itself is complete already
    ::close(dir);
  }
}

std::string read_framed_file(const std::string& path, const char magic[8], uint32_t version) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FramedFileError("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  const std::string bytes = s.str();
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
