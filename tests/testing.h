// Fixtures shared by the C++ tests: scratch folders, and files written or
// damaged on purpose. Torch- and protobuf-free, so that every test
// executable may include it (the torch wheel's protobuf headers must not meet
// Debian's in one translation unit).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

namespace moxie::testing {

// The empty folder TMP/relative: removed first if an earlier run left it.
// It stays after the test, for a look at what went wrong.
inline std::filesystem::path fresh_dir(const std::filesystem::path& relative) {
  const auto dir = std::filesystem::temp_directory_path() / relative;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A folder of its own for one test case (named by the process id and a
// counter, so parallel runs of the suite do not meet), removed with
// everything in it when the TempDir dies.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "moxie_test")
      : dir_(std::filesystem::temp_directory_path() /
             (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(next_++))) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return dir_; }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

 private:
  static inline int next_ = 0;
  std::filesystem::path dir_;
};

// Writes `bytes` to `path` (binary), creating the folders above it.
inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Damages one byte of a file in place (XOR 0x40).
inline void flip_byte(const std::filesystem::path& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x40);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

}  // namespace moxie::testing
