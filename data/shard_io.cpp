// Shard records: framing, checksums, atomic writes.
#include "data/shard_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "core/common/crc32c.h"
#include "core/common/file_io.h"

namespace moxie {
namespace {

constexpr char kMagic[8] = {'M', 'O', 'X', 'S', 'H', 'A', 'R', 'D'};
constexpr char kEndMagic[8] = {'M', 'O', 'X', 'E', 'N', 'D', '\0', '\0'};
constexpr uint64_t kHeaderBytes = 16, kRecordHeaderBytes = 16, kTrailerBytes = 20;

void put_u64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }  // x86-64 and arm64: little-endian
void put_u32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint64_t get_u64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t get_u32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw ShardError("cannot write " + path + ": " + errno_text());
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

ShardWriter::ShardWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw ShardError("cannot create " + tmp_ + ": " + errno_text());
  char header[kHeaderBytes] = {};
  std::memcpy(header, kMagic, 8);
  put_u32(header + 8, kShardFormatVersion);
  write_all(fd_, header, sizeof(header), tmp_);
  offset_ = kHeaderBytes;
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void ShardWriter::write_record(const std::string& payload) {
  char head[kRecordHeaderBytes];
  put_u64(head, payload.size());
  put_u32(head + 8, crc32c(payload.data(), payload.size()));
  put_u32(head + 12, crc32c(head, 12));
  write_all(fd_, head, sizeof(head), tmp_);
  write_all(fd_, payload.data(), payload.size(), tmp_);
  offset_ += kRecordHeaderBytes + payload.size();
}

uint64_t ShardWriter::append(const data::Sample& sample, uint32_t positions) {
  if (fd_ < 0) throw ShardError(path_ + ": append after close()");
  const uint64_t at = offset_;
  write_record(sample.SerializeAsString());
  offsets_.push_back(at);
  index_.add_offsets(at);
  index_.add_positions(positions);
  index_.add_source_counts(static_cast<uint32_t>(sample.sources_size()));
  for (uint32_t s : sample.sources()) index_.add_sources(s);
  uint32_t media = 0, context = 0;
  for (const auto& seg : sample.segments()) {
    media += seg.has_image() || seg.has_audio();
    context += seg.has_text() && seg.text().context();
  }
  index_.add_media(media);
  index_.add_context_segments(context);
  return at;
}

void ShardWriter::close() {
  if (fd_ < 0) return;
  const uint64_t index_offset = offset_;
  write_record(index_.SerializeAsString());
  char trailer[kTrailerBytes];
  put_u64(trailer, index_offset);
  put_u32(trailer + 8, crc32c(trailer, 8));
  std::memcpy(trailer + 12, kEndMagic, 8);
  write_all(fd_, trailer, sizeof(trailer), tmp_);
  offset_ += kTrailerBytes;
  if (::fsync(fd_) != 0) throw ShardError("cannot flush " + tmp_ + ": " + errno_text());
  ::close(fd_);
  fd_ = -1;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    throw ShardError("cannot rename " + tmp_ + " to " + path_ + ": " + errno_text());
  }
}

ShardReader::ShardReader(std::string path) : path_(std::move(path)) {
  // O_NONBLOCK: a FIFO at the path is refused below instead of blocking here.
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) throw ShardError("cannot open shard " + path_ + ": " + errno_text());
  // A constructor that throws runs no destructor: close the file here.
  try {
    check_and_index();
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

void ShardReader::check_and_index() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail(0, "cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) {
    throw ShardError("shard " + path_ + " is " + file_kind(path_) +
                     ", not a regular file; name a shard file");
  }
  file_bytes_ = static_cast<uint64_t>(st.st_size);
  if (file_bytes_ < kHeaderBytes + kRecordHeaderBytes + kTrailerBytes) {
    fail(0, "truncated: " + std::to_string(file_bytes_) + " bytes is shorter than an empty shard");
  }
  char header[kHeaderBytes];
  if (::pread(fd_, header, kHeaderBytes, 0) != static_cast<ssize_t>(kHeaderBytes) ||
      std::memcmp(header, kMagic, 8) != 0) {
    fail(0, "not a moxie shard (bad magic)");
  }
  if (get_u32(header + 8) != kShardFormatVersion) {
    fail(8, "format version " + std::to_string(get_u32(header + 8)) + " is not " +
                std::to_string(kShardFormatVersion) + "; rebuild it with this moxie");
  }
  char trailer[kTrailerBytes];
  const uint64_t at = file_bytes_ - kTrailerBytes;
  if (::pread(fd_, trailer, kTrailerBytes, static_cast<off_t>(at)) !=
          static_cast<ssize_t>(kTrailerBytes) ||
      std::memcmp(trailer + 12, kEndMagic, 8) != 0) {
    fail(at, "truncated or damaged: no end marker; rebuild it (moxie data build)");
  }
  if (get_u32(trailer + 8) != crc32c(trailer, 8)) fail(at, "trailer checksum mismatch");
  index_offset_ = get_u64(trailer);
  if (index_offset_ < kHeaderBytes || index_offset_ >= at) {
    fail(at, "index offset " + std::to_string(index_offset_) + " is outside the shard");
  }
  data::ShardIndex index;
  std::vector<char> buffer;
  const auto payload = read_payload(index_offset_, at, buffer);
  if (!index.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    fail(index_offset_, "index record does not parse");
  }
  uint64_t previous = 0;
  for (uint64_t o : index.offsets()) {
    if (o < kHeaderBytes || o >= index_offset_ || o < previous) {
      fail(index_offset_, "index lists offset " + std::to_string(o) + " outside the records");
    }
    previous = o;
    offsets_.push_back(o);
  }
  const auto n = static_cast<size_t>(index.offsets_size());
  if (static_cast<size_t>(index.positions_size()) != n ||
      static_cast<size_t>(index.source_counts_size()) != n ||
      static_cast<size_t>(index.media_size()) != n ||
      (index.context_segments_size() != 0 &&
       static_cast<size_t>(index.context_segments_size()) != n)) {
    fail(index_offset_, "index lists " + std::to_string(n) + " offsets but " +
                            std::to_string(index.positions_size()) + " lengths and " +
                            std::to_string(index.source_counts_size()) + " source counts");
  }
  positions_.assign(index.positions().begin(), index.positions().end());
  whole_.assign(index.media().begin(), index.media().end());
  for (size_t i = 0; i < static_cast<size_t>(index.context_segments_size()); ++i) {
    whole_[i] += index.context_segments(static_cast<int>(i));
  }
  source_begin_.push_back(0);
  uint64_t total = 0;
  for (uint32_t c : index.source_counts()) {
    total += c;
    if (total > static_cast<uint64_t>(index.sources_size())) {
      fail(index_offset_, "index source counts exceed its source list");
    }
    source_begin_.push_back(static_cast<uint32_t>(total));
  }
  sources_.assign(index.sources().begin(), index.sources().end());
}

std::vector<uint32_t> ShardReader::sources(size_t i) const {
  if (i >= offsets_.size())
    throw std::out_of_range("shard " + path_ + ": no sample " + std::to_string(i));
  return {sources_.begin() + source_begin_[i], sources_.begin() + source_begin_[i + 1]};
}

ShardReader::~ShardReader() {
  if (fd_ >= 0) ::close(fd_);
}

void ShardReader::fail(uint64_t offset, const std::string& what) const {
  throw ShardError("shard " + path_ + " at byte " + std::to_string(offset) + ": " + what);
}

std::string_view ShardReader::read_payload(uint64_t offset, uint64_t limit,
                                           std::vector<char>& buffer) const {
  char head[kRecordHeaderBytes];
  if (offset + kRecordHeaderBytes > limit ||
      ::pread(fd_, head, kRecordHeaderBytes, static_cast<off_t>(offset)) !=
          static_cast<ssize_t>(kRecordHeaderBytes)) {
    fail(offset, "record header runs past the end (truncated)");
  }
  if (get_u32(head + 12) != crc32c(head, 12)) fail(offset, "record header checksum mismatch");
  const uint64_t n = get_u64(head);
  if (n > limit - offset - kRecordHeaderBytes) {
    fail(offset, "record of " + std::to_string(n) + " bytes runs past the end (truncated)");
  }
  if (n > static_cast<uint64_t>(INT32_MAX)) {
    fail(offset, "record of " + std::to_string(n) + " bytes is over protobuf's 2 GiB limit");
  }
  // Grown, never zero-filled again: the bytes are read over it.
  if (buffer.size() < n) buffer.resize(n);
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd_, buffer.data() + done, n - done,
                              static_cast<off_t>(offset + kRecordHeaderBytes + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail(offset, "read failed: " + errno_text());
    done += static_cast<uint64_t>(r);
  }
  if (get_u32(head + 8) != crc32c(buffer.data(), n)) {
    fail(offset, "record checksum mismatch (the data was changed after it was written)");
  }
  return {buffer.data(), n};
}

void ShardReader::prefetch(size_t first, size_t last) const {
  if (first >= last || first >= offsets_.size()) return;
  uint64_t at = offsets_[first];
  const uint64_t end = last < offsets_.size() ? offsets_[last] : index_offset_;
  std::vector<char> buf(1 << 20);
  while (at < end) {
    const ssize_t r =
        ::pread(fd_, buf.data(), std::min<uint64_t>(buf.size(), end - at), static_cast<off_t>(at));
    if (r <= 0) return;  // a read error shows when the records are read
    at += static_cast<uint64_t>(r);
  }
}

data::Sample ShardReader::read(size_t i) const {
  if (i >= offsets_.size()) {
    throw std::out_of_range("shard " + path_ + " has " + std::to_string(offsets_.size()) +
                            " samples; asked for sample " + std::to_string(i));
  }
  const uint64_t end = i + 1 < offsets_.size() ? offsets_[i + 1] : index_offset_;
  thread_local std::vector<char> buffer;  // a record's bytes, reused
  const auto payload = read_payload(offsets_[i], end, buffer);
  data::Sample sample;
  if (!sample.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    fail(offsets_[i], "sample record does not parse");
  }
  return sample;
}

}  // namespace moxie
