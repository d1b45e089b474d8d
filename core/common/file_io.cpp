// Safe file input and output (see file_io.h).
#include "core/common/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace moxie {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int error) { return std::strerror(error); }

std::string kind_of(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

std::string folder_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void write_all(int fd, const void* data, size_t n, const std::string& path,
               const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int error = w < 0 ? errno : EIO;
      throw FileError("cannot write " + what + " " + path + ": " + errno_text(error));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

std::string file_kind(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "missing";
  return kind_of(st.st_mode);
}

InputFile::InputFile(const std::string& path, const std::string& what) : path_(path), what_(what) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) throw FileError("cannot open " + what + " " + path + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    const std::string kind = kind_of(st.st_mode);
    ::close(fd_);
    fd_ = -1;
    throw FileError(what + " " + path + " is " + kind +
                    ", not a regular file; give the path of a " + what + " file");
  }
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

InputFile::InputFile(InputFile&& other) noexcept
    : path_(std::move(other.path_)),
      what_(std::move(other.what_)),
      fd_(other.fd_),
      size_(other.size_) {
  other.fd_ = -1;
}

void InputFile::read_at(uint64_t offset, void* out, size_t n) const {
  if (offset > size_ || n > size_ - offset) {
    throw FileError(what_ + " " + path_ + ": " + std::to_string(n) + " bytes at offset " +
                    std::to_string(offset) + " lie past its end (" + std::to_string(size_) +
                    " bytes); the file is truncated or damaged");
  }
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      throw FileError("cannot read " + what_ + " " + path_ + " at offset " +
                      std::to_string(offset) + ": " + (r < 0 ? errno_text(errno) : "end of file"));
    }
    p += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
}

std::string InputFile::read_all(uint64_t max_bytes) const {
  if (size_ > max_bytes) {
    throw FileError(what_ + " " + path_ + " is " + std::to_string(size_) +
                    " bytes, more than the " + std::to_string(max_bytes) + " a " + what_ +
                    " may have; is it the right file?");
  }
  std::string bytes(size_, '\0');
  read_at(0, bytes.data(), bytes.size());
  return bytes;
}

std::string read_small_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  return InputFile(path, what).read_all(max_bytes);
}

uint64_t checked_count(uint64_t value, uint64_t limit, const std::string& file,
                       const std::string& field) {
  if (value > limit) {
    throw FileError(file + ": " + field + " is " + std::to_string(value) + ", more than " +
                    std::to_string(limit) + "; the file is damaged or not of this kind");
  }
  return value;
}

fs::path resolve_inside(const fs::path& folder, const std::string& relative,
                        const std::string& what) {
  const fs::path rel(relative);
  auto refuse = [&](const std::string& why) -> fs::path {
    throw FileError(what + " path '" + excerpt(relative, 80) + "' (in " + folder.string() + ") " +
                    why + "; paths in it must name files inside its folder");
  };
  if (relative.empty()) return refuse("is empty");
  if (relative.find('\0') != std::string::npos) return refuse("holds a NUL byte");
  if (rel.is_absolute()) return refuse("is absolute");
  for (const auto& part : rel) {
    if (part == "..") return refuse("climbs out with '..'");
  }
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(folder, ec);
  if (ec) return refuse("cannot be resolved: " + ec.message());
  const fs::path full = fs::weakly_canonical(base / rel, ec);
  if (ec) return refuse("cannot be resolved: " + ec.message());
  auto b = base.begin();
  auto f = full.begin();
  for (; b != base.end(); ++b, ++f) {
    if (f == full.end() || *b != *f) return refuse("leads out of the folder through a link");
  }
  return full;
}

std::string excerpt(std::string_view bytes, size_t max) {
  std::string out;
  const size_t n = bytes.size() < max ? bytes.size() : max;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  if (bytes.size() > max) out += "...";
  return out;
}

OutputFile::OutputFile(const std::string& path, const std::string& what)
    : path_(path), tmp_(path + ".tmp"), what_(what) {
  // Whatever sits at the temporary name (a stale file from a crash, or a link
  // planted there) is removed, not written through: unlink acts on the link.
  if (::unlink(tmp_.c_str()) != 0 && errno != ENOENT) {
    throw FileError("cannot remove the stale temporary " + tmp_ + " of " + what + " " + path +
                    ": " + errno_text(errno));
  }
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw FileError("cannot create " + what + " " + tmp_ + ": " + errno_text(errno) +
                    " (is the folder writable, and is nothing else writing there?)");
  }
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void OutputFile::write(const void* data, size_t n) {
  if (fd_ < 0) throw FileError(what_ + " " + path_ + " is already committed");
  write_all(fd_, data, n, tmp_, what_);
}

void OutputFile::commit() {
  if (fd_ < 0) throw FileError(what_ + " " + path_ + " is already committed");
  if (::fsync(fd_) != 0) {
    throw FileError("cannot flush " + what_ + " " + tmp_ + ": " + errno_text(errno));
  }
  const int closed = ::close(fd_);
  fd_ = -1;
  if (closed != 0) throw FileError("cannot close " + what_ + " " + tmp_ + ": " + errno_text(errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    throw FileError("cannot rename " + tmp_ + " to " + path_ + ": " + errno_text(errno));
  }
  committed_ = true;
  // Makes the rename itself survive a crash. Best effort: the file is
  // already complete and in place.
  const int dir = ::open(folder_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::string& path, std::string_view bytes,
                           const std::string& what) {
  OutputFile out(path, what);
  out.write(bytes);
  out.commit();
}

AppendFile::AppendFile(const std::string& path, const std::string& what, bool truncate)
    : path_(path), what_(what) {
  // Truncated only once it is known to be a regular file (O_TRUNC on open
  // would act before the check).
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
               0644);
  if (fd_ < 0) {
    const int error = errno;
    const std::string why =
        error == ELOOP ? "a symbolic link sits at that name; remove it" : errno_text(error);
    throw FileError("cannot open " + what + " " + path + ": " + why);
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    const std::string kind = kind_of(st.st_mode);
    ::close(fd_);
    fd_ = -1;
    throw FileError(what + " " + path + " is " + kind + ", not a regular file");
  }
  const int now = ::fcntl(fd_, F_GETFL);
  if (now >= 0) (void)::fcntl(fd_, F_SETFL, now & ~O_NONBLOCK);
  if (truncate && ::ftruncate(fd_, 0) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    throw FileError("cannot truncate " + what + " " + path + ": " + errno_text(error));
  }
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::append(std::string_view bytes) {
  write_all(fd_, bytes.data(), bytes.size(), path_, what_);
}

void AppendFile::flush() {
  if (::fdatasync(fd_) != 0) {
    throw FileError("cannot flush " + what_ + " " + path_ + ": " + errno_text(errno));
  }
}

}  // namespace moxie
