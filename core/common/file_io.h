// Files in and out, safely. Every reader of a file the user names (shard,
// manifest, checkpoint, config, media, tokenizer) opens it here, so a
// directory, FIFO or device is refused by name before a read can block;
// every writer goes through OutputFile, so no output follows a link planted
// at its name and no partial file replaces a good one. Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace moxie {

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What a path is, in words: "a directory", "a FIFO", "a character device",
// "a socket", "a symbolic link", "a regular file", "missing".
std::string file_kind(const std::filesystem::path& path);

// An open regular file for reading. `what` names the file's role in errors
// ("shard", "checkpoint index", "image"). The open never blocks: a FIFO,
// device, socket or directory is refused with what it is.
class InputFile {
 public:
  InputFile(const std::string& path, const std::string& what);
  ~InputFile();
  InputFile(InputFile&& other) noexcept;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  InputFile& operator=(InputFile&&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Exactly `n` bytes at `offset`; FileError naming the file and the offset
  // when the range lies past its end or the read fails.
  void read_at(uint64_t offset, void* out, size_t n) const;
  // The whole file; refused (before reading) above `max_bytes`.
  std::string read_all(uint64_t max_bytes) const;

 private:
  std::string path_, what_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The whole of a small regular file (a config, a JSON header, an index):
// refused by name when it is not a regular file or exceeds `max_bytes`.
std::string read_small_file(const std::string& path, const std::string& what, uint64_t max_bytes);

// A count, length, offset or size read from a file, checked before anything
// is sized by it: FileError "<file>: <field> is <value>, more than <limit>"
// when it exceeds `limit` (a stated limit, or what the file can hold).
uint64_t checked_count(uint64_t value, uint64_t limit, const std::string& file,
                       const std::string& field);

// `relative`, a path read from a manifest or index inside `folder`, resolved
// inside it: refused when absolute, when it has a `..` component, or when a
// symbolic link on the way leads out of the folder.
std::filesystem::path resolve_inside(const std::filesystem::path& folder,
                                     const std::string& relative, const std::string& what);

// At most `max` bytes of `bytes` for an error message, non-printable bytes
// as \xNN, with "..." when cut: a mis-pointed file is never echoed whole.
std::string excerpt(std::string_view bytes, size_t max = 40);

// A file written whole or not at all: a temporary beside the target (the
// target's name + ".tmp"), created with O_EXCL | O_NOFOLLOW after removing
// whatever link or stale file sat at that name (unlink never follows a link),
// then fsync, rename over the target (which replaces a link there rather than
// writing through it) and fsync of the folder. Destroyed uncommitted, the
// temporary is removed and the target is untouched. Every failure is a
// FileError naming the file and the system's reason.
class OutputFile {
 public:
  OutputFile(const std::string& path, const std::string& what);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }
  void commit();

 private:
  std::string path_, tmp_, what_;
  int fd_ = -1;
  bool committed_ = false;
};

// OutputFile in one call.
void write_file_atomically(const std::string& path, std::string_view bytes,
                           const std::string& what);

// A file appended to over a run (metrics.jsonl): opened with O_NOFOLLOW, so a
// link planted at its name is refused, and refused unless regular. Each
// append is written whole or throws FileError naming the file.
class AppendFile {
 public:
  AppendFile(const std::string& path, const std::string& what, bool truncate);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  void append(std::string_view bytes);
  void flush();  // fdatasync; FileError when the device reports a failure

 private:
  std::string path_, what_;
  int fd_ = -1;
};

}  // namespace moxie
