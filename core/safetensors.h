// safetensors, Hugging Face's tensor file format, without torch: an 8-byte
// little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the byte buffer (offsets are relative to its start). Nothing is loaded
// by executing code; every header is checked before a byte is trusted.
#pragma once

#include <cstdint>
#include <map>
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

// A read-only memory map of one file, validated on open. Movable, not copyable.
class Reader {
 public:
  explicit Reader(const std::string& path);  // throws Error naming the file and what is wrong
  ~Reader();
  Reader(Reader&& other) noexcept;
  Reader& operator=(Reader&& other) noexcept;
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // by data offset
  const TensorInfo* find(const std::string& name) const;              // nullptr if absent
  const TensorInfo& at(const std::string& name) const;                // throws Error if absent
  const uint8_t* data(const TensorInfo& tensor) const { return base_ + tensor.offset; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  uint64_t nbytes;
};

// Writes path + ".tmp", fsyncs it and renames it over `path`: a failed write
// leaves no partial file and any earlier file at `path` intact. Throws Error
// naming the file and the system's reason.
void write(const std::string& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata = {});

}  // namespace moxie::safetensors
