// libFuzzer target: arbitrary bytes as a safetensors file. Opening it must
// end in a safetensors::Error or a Reader whose every tensor lies inside the
// file with the bytes its dtype and shape need, never a crash, a hang or an
// out-of-bounds access (AddressSanitizer and UBSan). Started on an empty
// corpus folder, it first writes valid files there as the seeds.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/checkpoint/safetensors.h"
#include "core/common/file_io.h"

namespace fs = std::filesystem;
namespace st = moxie::safetensors;

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (arg.empty() || arg[0] == '-') continue;
    std::error_code ec;
    fs::create_directories(arg, ec);
    if (!fs::is_empty(arg, ec)) return 0;
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const uint16_t h[4] = {1, 2, 3, 4};
    const uint8_t b[3] = {1, 0, 1};
    st::write(arg + "/seed-three.safetensors",
              {{"a.weight", st::DType::F32, {2, 3}, w, sizeof(w)},
               {"b", st::DType::BF16, {4}, h, sizeof(h)},
               {"mask", st::DType::BOOL, {3}, b, sizeof(b)},
               {"empty", st::DType::I64, {0, 5}, nullptr, 0}},
              {{"format", "pt"}, {"moxie.state", R"({"step":"5"})"}});
    const double x = 0.5;
    st::write(arg + "/seed-scalar.safetensors", {{"s", st::DType::F64, {}, &x, sizeof(x)}}, {});
    return 0;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    char name[] = "/tmp/moxie-fuzz-st-XXXXXX";
    const int fd = ::mkstemp(name);
    if (fd < 0) std::abort();
    ::close(fd);
    return std::string(name);
  }();
  moxie::write_file_atomically(path, std::string_view(reinterpret_cast<const char*>(data), size),
                               "input");
  try {
    const st::Reader reader(path);
    uint64_t sum = 0;
    for (const auto& t : reader.tensors()) {
      uint64_t need = st::dtype_size(t.dtype);
      for (const auto d : t.shape) need *= static_cast<uint64_t>(d);
      if (need != t.nbytes || t.offset + t.nbytes > size) std::abort();
      // Touch the first and last byte: ASan sees a read outside the map.
      if (t.nbytes > 0) sum += reader.data(t)[0] + reader.data(t)[t.nbytes - 1];
      if (reader.find(t.name) != &t) std::abort();
    }
    for (const auto& [key, value] : reader.metadata()) sum += key.size() + value.size();
    if (sum == 1) ::write(-1, "", 0);  // keeps the reads
  } catch (const st::Error&) {
  }
  return 0;
}
