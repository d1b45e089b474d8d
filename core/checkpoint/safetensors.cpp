// safetensors: the validating, memory-mapping Reader and the atomic write().
// What a file looks like and what is checked is described in safetensors.h.
#include "core/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/common/file_io.h"

namespace moxie::safetensors {
namespace {

// The reference implementation's limit; a longer header is a corrupt length.
constexpr uint64_t kMaxHeader = 100'000'000;
constexpr int kMaxDepth = 8;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {{DType::F64, "F64", 8}, {DType::F32, "F32", 4},
                                  {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
                                  {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
                                  {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
                                  {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1}};

const DTypeEntry& entry(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  throw Error("invalid safetensors::DType value " + std::to_string(static_cast<int>(dtype)));
}

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw Error(path + ": " + why);
}

// For a failed system call: names the file and the system's reason.
[[noreturn]] void fail_sys(const std::string& doing, const std::string& path) {
  const int err = errno;
  throw Error("cannot " + doing + " " + path + ": " + std::strerror(err));
}

std::string str(uint64_t n) { return std::to_string(n); }

std::string bytes(uint64_t begin, uint64_t end) {
  return "bytes [" + str(begin) + ", " + str(end) + ")";
}

// Bytes a tensor of this dtype and shape takes; `what` names it in errors.
uint64_t nbytes_of(DType dtype, const std::vector<int64_t>& shape, const std::string& what) {
  uint64_t n = dtype_size(dtype);
  for (const int64_t d : shape) {
    if (d < 0) throw Error(what + " has a negative dimension " + std::to_string(d));
    if (d != 0 && n > UINT64_MAX / static_cast<uint64_t>(d))
      throw Error(what + ": shape overflows 64 bits");
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

// One header entry, checked against the byte buffer, which starts at file
// byte `data_start` and holds `buffer` bytes.
TensorInfo parse_entry(const std::string& path, const std::string& name, const nlohmann::json& v,
                       uint64_t data_start, uint64_t buffer) {
  const std::string what = "tensor '" + excerpt(name, 80) + "'";
  if (!v.is_object()) fail(path, what + " is not an object with dtype, shape and data_offsets");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) fail(path, what + " has no " + key);
  const auto& dtype = v.at("dtype");
  const auto& shape = v.at("shape");
  const auto& offsets = v.at("data_offsets");
  if (!dtype.is_string())
    fail(path, what + ": dtype is " + excerpt(dtype.dump(), 60) + ", not a string such as \"F32\"");
  if (!shape.is_array())
    fail(path, what + ": shape is " + excerpt(shape.dump(), 60) + ", not an array of integers");
  if (!offsets.is_array() || offsets.size() != 2)
    fail(path, what + ": data_offsets is " + excerpt(offsets.dump(), 60) + ", not [begin, end]");

  TensorInfo t;
  t.name = name;
  const auto dtype_str = dtype.get<std::string>();
  const auto* found = std::find_if(std::begin(kDTypes), std::end(kDTypes),
                                   [&](const DTypeEntry& e) { return dtype_str == e.name; });
  if (found == std::end(kDTypes))
    fail(path, what + " has unsupported dtype '" + dtype_str +
                   "' (moxie reads F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
  t.dtype = found->dtype;
  // nlohmann parses every non-negative integer as unsigned, every negative one as signed.
  for (const auto& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > INT64_MAX)
      fail(path,
           what + ": shape dimension " + excerpt(d.dump(), 60) + " is not a non-negative integer");
    t.shape.push_back(d.get<int64_t>());
  }
  for (const auto& o : offsets)
    if (!o.is_number_unsigned())
      fail(path,
           what + ": data offset " + excerpt(o.dump(), 60) + " is not a non-negative integer");
  const uint64_t begin = offsets[0].get<uint64_t>();
  const uint64_t end = offsets[1].get<uint64_t>();
  if (begin > end)
    fail(path,
         what + " has data_offsets [" + str(begin) + ", " + str(end) + "]: begin is after end");
  if (end > buffer) {
    fail(path, what + " ends at byte " + str(data_start + end) + " but the file has " +
                   str(data_start + buffer) +
                   " bytes; it is truncated or its data_offsets are wrong");
  }
  const uint64_t need = nbytes_of(t.dtype, t.shape, path + ": " + what);
  if (end - begin != need) {
    fail(path, what + " has " + str(end - begin) + " bytes at byte " + str(data_start + begin) +
                   " but dtype " + dtype_str + " and shape " + excerpt(shape.dump(), 60) +
                   " need " + str(need));
  }
  t.offset = data_start + begin;
  t.nbytes = end - begin;
  return t;
}

// The format wants the tensors, sorted by offset, to tile the buffer exactly.
void check_tiling(const std::string& path, const std::vector<TensorInfo>& sorted,
                  uint64_t data_start, uint64_t file_size) {
  uint64_t cursor = data_start;
  const TensorInfo* prev = nullptr;
  for (const auto& t : sorted) {
    if (t.offset < cursor) {  // then prev is set: every offset is >= data_start
      fail(path, "tensor '" + excerpt(t.name, 80) + "' at " + bytes(t.offset, t.offset + t.nbytes) +
                     " overlaps tensor '" + excerpt(prev->name, 80) + "' at " +
                     bytes(prev->offset, cursor));
    }
    if (t.offset > cursor)
      fail(path, bytes(cursor, t.offset) + " belong to no tensor (the format allows no holes)");
    cursor = t.offset + t.nbytes;
    prev = &t;
  }
  if (cursor != file_size)
    fail(path,
         bytes(cursor, file_size) + " at the end belong to no tensor (the format allows no holes)");
}

// An OutputFile (core/common/file_io.h: a temporary beside the target,
// created O_EXCL | O_NOFOLLOW, renamed over it on commit) written at offsets.
// `direct`: O_DIRECT where the file system allows it (direct() says whether
// it did), so that writes go from the caller's buffer to the disk without a
// copy into the page cache.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path, bool direct = false) : file_(open(path)) {
    if (direct) {
      const int flags = ::fcntl(file_->fd(), F_GETFL);
      direct_ = flags >= 0 && ::fcntl(file_->fd(), F_SETFL, flags | O_DIRECT) == 0;
    }
  }
  bool direct() const { return direct_; }

  void put(const void* data, size_t n) {
    put_at(data, n, offset_);
    offset_ += n;
  }
  void put_at(const void* data, size_t n, uint64_t offset) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t w = ::pwrite(file_->fd(), p, n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EINVAL && direct_) {
        // The file system (or a size limit that shortens the write to a
        // partial block) refuses O_DIRECT here: go on through the page cache.
        const int flags = ::fcntl(file_->fd(), F_GETFL);
        if (flags < 0 || ::fcntl(file_->fd(), F_SETFL, flags & ~O_DIRECT) != 0)
          fail_sys("write", file_->temp_path());
        direct_ = false;
        continue;
      }
      if (w <= 0) {
        if (w == 0) errno = EIO;
        fail_sys("write", file_->temp_path());
      }
      p += w;
      offset += static_cast<uint64_t>(w);
      n -= static_cast<size_t>(w);
    }
  }
  void truncate(uint64_t size) {
    if (::ftruncate(file_->fd(), static_cast<off_t>(size)) != 0)
      fail_sys("truncate", file_->temp_path());
  }
  void commit() {
    try {
      file_->commit();
    } catch (const FileError& e) {
      throw Error(e.what());
    }
  }

 private:
  static std::unique_ptr<OutputFile> open(const std::string& path) {
    try {
      return std::make_unique<OutputFile>(path, "safetensors file");
    } catch (const FileError& e) {
      throw Error(e.what());
    }
  }
  std::unique_ptr<OutputFile> file_;
  bool direct_ = false;
  uint64_t offset_ = 0;
};

}  // namespace

size_t dtype_size(DType dtype) { return entry(dtype).size; }
const char* dtype_name(DType dtype) { return entry(dtype).name; }

void Reader::Unmap::operator()(const uint8_t* base) const {
  ::munmap(const_cast<uint8_t*>(base), size);
}

Reader::Reader(const std::string& path) : path_(path) {
  uint64_t size = 0;
  {
    // InputFile: a FIFO, device or folder is refused by name, never blocked on.
    std::unique_ptr<InputFile> in;
    try {
      in = std::make_unique<InputFile>(path, "safetensors file");
    } catch (const FileError& e) {
      throw Error(e.what());
    }
    size = in->size();
    if (size < 8)
      fail(path, "file is " + str(size) +
                     " bytes, shorter than the 8-byte header length; not a safetensors file");
    void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, in->fd(), 0);
    if (base == MAP_FAILED) fail_sys("map", path);
    map_ = decltype(map_)(static_cast<const uint8_t*>(base), Unmap{size});
  }
  const uint8_t* base = map_.get();
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxHeader)
    fail(path, "header length " + str(header_len) + " exceeds 100 MB; not a safetensors file");
  if (header_len > size - 8) {
    fail(path, "header length " + str(header_len) + " runs past the end of the " + str(size) +
                   "-byte file; it is truncated or not safetensors");
  }
  const uint64_t data_start = 8 + header_len;

  nlohmann::json header;
  try {
    // A header nests three levels ({name: {shape: [..]}}); deeper nesting is
    // refused while parsing, so no later walk of it recurses without bound.
    header = nlohmann::json::parse(
        base + 8, base + data_start,
        [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          if (depth > kMaxDepth)
            fail(path, "header nests deeper than " + str(kMaxDepth) + " levels; not safetensors");
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    fail(path, "header (" + bytes(8, data_start) + ") is not valid JSON: " + e.what());
  }
  if (!header.is_object())
    fail(path, "header is " + std::string(header.type_name()) + ", not a JSON object");

  for (const auto& [name, v] : header.items()) {
    if (name != "__metadata__") {
      tensors_.push_back(parse_entry(path, name, v, data_start, size - data_start));
      continue;
    }
    if (!v.is_object())
      fail(path, "__metadata__ is " + excerpt(v.dump(), 60) + ", not an object of strings");
    for (const auto& [key, value] : v.items()) {
      if (!value.is_string())
        fail(path, "__metadata__ value of '" + excerpt(key, 80) + "' is " +
                       excerpt(value.dump(), 60) + ", not a string");
      metadata_[key] = value.get<std::string>();
    }
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.offset != b.offset) return a.offset < b.offset;
    return a.nbytes != b.nbytes ? a.nbytes < b.nbytes : a.name < b.name;
  });
  check_tiling(path, tensors_, data_start, size);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorInfo* Reader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& Reader::at(const std::string& name) const {
  const auto* t = find(name);
  if (!t)
    fail(path_, "no tensor named '" + name + "' among its " + str(tensors_.size()) + " tensors");
  return *t;
}

Layout plan(const std::string& path, const std::vector<TensorView>& tensors,
            const std::map<std::string, std::string>& metadata, uint64_t align,
            uint64_t min_prefix) {
  if (align == 0 || align % 8 != 0)
    fail(path, "the prefix alignment " + str(align) + " is not a multiple of 8");
  std::vector<size_t> sorted(tensors.size());
  for (size_t i = 0; i < sorted.size(); ++i) sorted[i] = i;
  std::sort(sorted.begin(), sorted.end(),
            [&](size_t a, size_t b) { return tensors[a].name < tensors[b].name; });

  Layout out;
  out.offsets.resize(tensors.size());
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const TensorView& t = tensors[sorted[i]];
    const std::string what = "tensor '" + t.name + "'";
    if (i > 0 && tensors[sorted[i - 1]].name == t.name)
      fail(path, what + " is given twice; names must be unique");
    if (t.name == "__metadata__")
      fail(path, "'__metadata__' names the metadata and cannot name a tensor");
    const uint64_t need = nbytes_of(t.dtype, t.shape, path + ": " + what);
    if (need != t.nbytes) {
      fail(path, what + " has " + str(t.nbytes) + " bytes but dtype " + dtype_name(t.dtype) +
                     " and its shape need " + str(need));
    }
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes}}};
    out.offsets[sorted[i]] = offset;
    offset += t.nbytes;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("a tensor name or metadata string is not valid UTF-8: ") + e.what());
  }
  // The format allows the header to be padded with spaces.
  uint64_t prefix = std::max<uint64_t>(8 + json.size(), min_prefix);
  prefix = (prefix + align - 1) / align * align;
  json.append(prefix - 8 - json.size(), ' ');
  out.prefix.resize(8);
  for (int i = 0; i < 8; ++i)
    out.prefix[i] = static_cast<char>(static_cast<uint64_t>(json.size()) >> (8 * i));
  out.prefix += json;
  for (auto& o : out.offsets) o += prefix;
  out.file_size = prefix + offset;
  return out;
}

void write(const std::string& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata) {
  for (const auto& t : tensors) {
    if (t.nbytes > 0 && t.data == nullptr)
      fail(path, "tensor '" + t.name + "' has " + str(t.nbytes) + " bytes but no data pointer");
  }
  const Layout layout = plan(path, tensors, metadata);
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return layout.offsets[a] < layout.offsets[b]; });

  AtomicFile file(path);
  file.put(layout.prefix.data(), layout.prefix.size());
  for (const size_t i : order) file.put(tensors[i].data, tensors[i].nbytes);
  file.commit();
}

void write_buffer(const std::string& path, uint8_t* buffer, uint64_t size, uint64_t capacity,
                  uint64_t prefix_size, const std::function<void()>& fill_prefix) {
  constexpr uint64_t kBlock = 4096;
  constexpr uint64_t kChunk = 16 << 20;
  if (prefix_size > size) fail(path, "the prefix is longer than the file");
  const bool aligned = reinterpret_cast<uintptr_t>(buffer) % kBlock == 0 &&
                       prefix_size % kBlock == 0 &&
                       capacity >= (size + kBlock - 1) / kBlock * kBlock;
  AtomicFile file(path, /*direct=*/aligned);
  // With O_DIRECT every write is whole blocks; the tail past `size` is cut
  // off again by truncate().
  const uint64_t end = file.direct() ? (size + kBlock - 1) / kBlock * kBlock : size;
  for (uint64_t at = prefix_size; at < end; at += kChunk)
    file.put_at(buffer + at, std::min(kChunk, end - at), at);
  fill_prefix();
  file.put_at(buffer, prefix_size, 0);
  if (end != size) file.truncate(size);
  file.commit();
}

}  // namespace moxie::safetensors
