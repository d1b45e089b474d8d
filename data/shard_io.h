// Shard files: samples (data/shard.proto) as checksummed records, readable
// in sequence and by index.
//
//   header   "MOXSHARD" | u32 format version | u32 0
//   record   u64 payload bytes | u32 crc32c(payload) | u32 crc32c(previous 12
//            bytes) | payload (a serialized Sample)
//   ...
//   index    one more record whose payload is a ShardIndex: each sample's
//            record offset (64-bit), length in model positions and sources
//   trailer  u64 offset of the index record | u32 crc32c(those 8 bytes) |
//            "MOXEND\0\0"
// All integers little-endian. The header's own checksum protects the length,
// so a corrupt length is reported, never allocated.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "data/shard.pb.h"

namespace moxie {

constexpr uint32_t kShardFormatVersion = 2;

// A shard that cannot be read as written: the message names the file, the
// byte offset and what to do.
class ShardError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes a shard atomically: records go to PATH.tmp, close() appends the
// index and trailer, flushes to disk and renames onto PATH. A writer
// destroyed without close() removes PATH.tmp and leaves PATH untouched.
class ShardWriter {
 public:
  explicit ShardWriter(std::string path);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Returns the record's offset in the shard. `positions`: the sample's
  // length in model positions (see data/loader.h), kept in the index.
  uint64_t append(const data::Sample& sample, uint32_t positions = 0);
  void close();
  uint64_t samples() const { return offsets_.size(); }
  uint64_t bytes() const { return offset_; }

 private:
  void write_record(const std::string& payload);

  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t offset_ = 0;
  std::vector<uint64_t> offsets_;
  data::ShardIndex index_;
};

// Opens a shard, checking its header, trailer and index (ShardError if any
// is wrong or the file is truncated); records are checked as they are read.
class ShardReader {
 public:
  explicit ShardReader(std::string path);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  size_t size() const { return offsets_.size(); }
  uint64_t offset(size_t i) const { return offsets_.at(i); }
  uint32_t positions(size_t i) const { return positions_.at(i); }
  // The sample starts a fresh row when it fits one: it has media or an SFT
  // prompt, which must not be cut from what follows it.
  bool keep_whole(size_t i) const { return whole_.at(i) != 0; }
  // Indices into the manifest's sources of sample i.
  std::vector<uint32_t> sources(size_t i) const;
  const std::string& path() const { return path_; }
  // Sample i; ShardError naming the shard and offset if its record is corrupt.
  data::Sample read(size_t i) const;
  // Reads the bytes of samples [first, last) into the page cache (sequential
  // 1 MiB reads, discarded), so that reading them in shuffled order afterwards
  // comes from memory. For a background thread.
  void prefetch(size_t first, size_t last) const;

 private:
  void check_and_index();
  // The record's checked payload, read into `buffer` (grown as needed).
  std::string_view read_payload(uint64_t offset, uint64_t limit, std::vector<char>& buffer) const;
  [[noreturn]] void fail(uint64_t offset, const std::string& what) const;

  std::string path_;
  int fd_ = -1;
  uint64_t file_bytes_ = 0, index_offset_ = 0;
  std::vector<uint64_t> offsets_;
  std::vector<uint32_t> positions_, whole_;
  std::vector<uint32_t> source_begin_;  // num samples + 1 entries into sources_
  std::vector<uint32_t> sources_;
};

}  // namespace moxie
