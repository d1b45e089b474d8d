// safetensors, Hugging Face's tensor file format, without torch: an 8-byte
// little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the byte buffer (offsets are relative to its start). Nothing is loaded
// by executing code; every header is checked before a byte is trusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace moxie::safetensors {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t offset;  // absolute, from the start of the file
  uint64_t nbytes;
};

// A read-only memory map of one file, validated on open: every tensor's bytes
// lie inside the file, match its dtype and shape, and the tensors tile the
// buffer without overlaps or holes. Movable, not copyable; the pointers from
// data() live as long as the Reader that gave them. They are not aligned to
// the dtype in general (the format only pads the header to 8 bytes), so read
// them with memcpy or copy them out.
class Reader {
 public:
  explicit Reader(const std::string& path);  // throws Error naming the file and what is wrong
  Reader(Reader&&) noexcept = default;
  Reader& operator=(Reader&&) noexcept = default;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // by data offset
  const TensorInfo* find(const std::string& name) const;               // nullptr if absent
  const TensorInfo& at(const std::string& name) const;                 // throws Error if absent
  const uint8_t* data(const TensorInfo& tensor) const { return map_.get() + tensor.offset; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  struct Unmap {
    size_t size;
    void operator()(const uint8_t* base) const;
  };
  std::string path_;
  std::unique_ptr<const uint8_t, Unmap> map_{nullptr, Unmap{0}};  // the whole file
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write; `data` (nbytes bytes) is only read during write().
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  uint64_t nbytes;
};

// Writes the tensors, sorted by name, after a header padded with spaces to a
// multiple of 8 bytes. Checks first that names are unique and not
// "__metadata__" and that each nbytes is product(shape) * dtype_size. Writes
// path + ".tmp", fsyncs it and renames it over `path`: a failed write leaves
// no partial file and any earlier file at `path` intact. Throws Error naming
// the file and the system's reason.
void write(const std::string& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata = {});

// Where write() puts everything, for a writer that lays the whole file out in
// its own buffer: the prefix (the 8-byte length and the header, padded with
// spaces to a multiple of `align` bytes and to at least `min_prefix`), each
// tensor's offset from the start of the file (in the order given; the file
// holds them sorted by name) and the file's size. Checks what write() checks
// except the data pointers, which are not read.
struct Layout {
  std::string prefix;
  std::vector<uint64_t> offsets;
  uint64_t file_size = 0;
};
Layout plan(const std::string& path, const std::vector<TensorView>& tensors,
            const std::map<std::string, std::string>& metadata, uint64_t align = 8,
            uint64_t min_prefix = 0);

// Writes the file laid out in buffer[0, size) atomically, like write(): the
// bytes after the prefix first, then calls fill_prefix() (which puts the
// final prefix of prefix_size bytes into buffer, e.g. once checksums computed
// while the data was written are known) and writes the prefix. When the
// buffer is 4096-byte aligned, prefix_size a multiple of 4096 and capacity
// at least size rounded up to 4096, the file is written with O_DIRECT (no
// copy through the page cache) where the file system allows it.
void write_buffer(const std::string& path, uint8_t* buffer, uint64_t size, uint64_t capacity,
                  uint64_t prefix_size, const std::function<void()>& fill_prefix);

}  // namespace moxie::safetensors
