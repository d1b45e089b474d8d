// safetensors reader (mmap, validated) and atomic writer.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace moxie::safetensors {
namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1}, {DType::U8, "U8", 1}, {DType::BOOL, "BOOL", 1}};

const DTypeEntry& entry(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e;
  throw Error("unknown safetensors dtype");
}

uint64_t checked_bytes(const std::vector<int64_t>& shape, DType dtype, const std::string& what) {
  uint64_t n = dtype_size(dtype);
  for (auto d : shape) {
    if (d < 0) throw Error(what + ": negative dimension in shape");
    if (d != 0 && n > UINT64_MAX / static_cast<uint64_t>(d)) throw Error(what + ": shape overflows");
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

std::string sys_error(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

size_t dtype_size(DType dtype) { return entry(dtype).size; }
const char* dtype_name(DType dtype) { return entry(dtype).name; }

Reader::Reader(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(sys_error("cannot open", path));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(sys_error("cannot stat", path));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw Error(sys_error("cannot map", path));
    }
    base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);

  try {
    auto fail = [&](const std::string& why) -> void { throw Error(path + ": " + why); };
    if (size_ < 8) fail("file is " + std::to_string(size_) + " bytes, shorter than the 8-byte header length");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base_[i];
    if (header_len > kMaxHeader) fail("header length " + std::to_string(header_len) + " exceeds 100 MB");
    if (header_len > size_ - 8) {
      fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
           std::to_string(size_) + " bytes); the file is truncated or not safetensors");
    }
    const uint64_t data_start = 8 + header_len;
    const uint64_t buffer = size_ - data_start;

    nlohmann::json header;
    try {
      header = nlohmann::json::parse(base_ + 8, base_ + data_start);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON (") + e.what() + ")");
    }
    if (!header.is_object()) fail("header is not a JSON object");

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) fail("__metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string what = "tensor '" + name + "'";
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
          !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
          !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
        fail(what + " needs dtype (string), shape (array) and data_offsets ([begin, end])");
      }
      TensorInfo t;
      t.name = name;
      const auto dtype = v["dtype"].get<std::string>();
      const auto* found = std::find_if(std::begin(kDTypes), std::end(kDTypes),
                                       [&](const DTypeEntry& e) { return dtype == e.name; });
      if (found == std::end(kDTypes)) fail(what + " has unsupported dtype '" + dtype + "'");
      t.dtype = found->dtype;
      for (const auto& d : v["shape"]) {
        if (!d.is_number_integer()) fail(what + " has a non-integer dimension");
        t.shape.push_back(d.get<int64_t>());
      }
      for (const auto& o : v["data_offsets"]) {
        if (!o.is_number_unsigned()) fail(what + " has a data offset that is not a non-negative integer");
      }
      const uint64_t begin = v["data_offsets"][0].get<uint64_t>();
      const uint64_t end = v["data_offsets"][1].get<uint64_t>();
      if (begin > end) fail(what + " has data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
      if (end > buffer) {
        fail(what + " ends at byte " + std::to_string(data_start + end) + " of a " +
             std::to_string(size_) + "-byte file; the file is truncated");
      }
      const uint64_t expected = checked_bytes(t.shape, t.dtype, path + ": " + what);
      if (end - begin != expected) {
        fail(what + " has " + std::to_string(end - begin) + " bytes at offset " +
             std::to_string(data_start + begin) + " but its dtype and shape need " + std::to_string(expected));
      }
      t.offset = data_start + begin;
      t.nbytes = end - begin;
      tensors_.push_back(std::move(t));
    }
    std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
    });
    uint64_t cursor = data_start;
    for (const auto& t : tensors_) {
      if (t.offset < cursor) fail("tensor '" + t.name + "' overlaps the tensor before it at byte " + std::to_string(t.offset));
      if (t.offset > cursor) fail("bytes " + std::to_string(cursor) + ".." + std::to_string(t.offset) + " belong to no tensor (the format allows no holes)");
      cursor = t.offset + t.nbytes;
    }
    if (cursor != size_) fail("bytes " + std::to_string(cursor) + ".." + std::to_string(size_) + " at the end belong to no tensor");
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  } catch (...) {
    release();
    throw;
  }
}

Reader::~Reader() { release(); }

void Reader::release() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
  base_ = nullptr;
  size_ = 0;
}

Reader::Reader(Reader&& o) noexcept
    : path_(std::move(o.path_)), base_(o.base_), size_(o.size_), tensors_(std::move(o.tensors_)),
      index_(std::move(o.index_)), metadata_(std::move(o.metadata_)) {
  o.base_ = nullptr;
  o.size_ = 0;
}

Reader& Reader::operator=(Reader&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    base_ = o.base_;
    size_ = o.size_;
    tensors_ = std::move(o.tensors_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
    o.base_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

const TensorInfo* Reader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& Reader::at(const std::string& name) const {
  const auto* t = find(name);
  if (!t) throw Error(path_ + ": no tensor named '" + name + "'");
  return *t;
}

void write(const std::string& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorView*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorView* a, const TensorView* b) { return a->name < b->name; });
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto* t : sorted) {
    if (!names.insert(t->name).second) throw Error(path + ": tensor '" + t->name + "' given twice");
    if (t->name == "__metadata__") throw Error(path + ": '__metadata__' is reserved");
    const uint64_t need = checked_bytes(t->shape, t->dtype, path + ": tensor '" + t->name + "'");
    if (need != t->nbytes) {
      throw Error(path + ": tensor '" + t->name + "' has " + std::to_string(t->nbytes) +
                  " bytes but its dtype and shape need " + std::to_string(need));
    }
    header[t->name] = {{"dtype", dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->nbytes}}};
    offset += t->nbytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(json.size()) >> (8 * i));

  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(sys_error("cannot create", tmp));
  auto put = [&](const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        const std::string msg = sys_error("cannot write", tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(msg);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  };
  put(len, 8);
  put(json.data(), json.size());
  for (const auto* t : sorted) put(t->data, t->nbytes);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string msg = sys_error("cannot flush", tmp);
    ::unlink(tmp.c_str());
    throw Error(msg);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string msg = sys_error("cannot rename " + tmp + " to", path);
    ::unlink(tmp.c_str());
    throw Error(msg);
  }
}

}  // namespace moxie::safetensors
