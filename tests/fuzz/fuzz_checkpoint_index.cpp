// libFuzzer target: arbitrary bytes as a checkpoint's index.pb, in a
// committed folder beside one valid rank file. Reading the index and checking
// every rank file against it must end in a CheckpointError or an index whose
// pieces lie inside their tensors and files, never a crash, a hang or an
// allocation sized by an unchecked number (AddressSanitizer and UBSan).
// The first byte chooses how the rest becomes the file: framed as version 2
// or 1 (so the protobuf parser and the field checks are reached, not only
// the frame's checksum), or as the whole file. Started on an empty corpus
// folder, it first writes a valid index there as the seed.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/checkpoint/checkpoint_index.h"
#include "core/checkpoint/safetensors.h"
#include "core/common/file_io.h"
#include "core/common/framed_file.h"

namespace fs = std::filesystem;
using namespace moxie;

namespace {

constexpr char kMagic[8] = {'M', 'O', 'X', 'C', 'K', 'P', 'T', '1'};

// A committed checkpoint folder of step 5 with one rank file (two tensors),
// made once per process; returns its path.
const std::string& folder() {
  static const std::string dir = [] {
    char root[] = "/tmp/moxie-fuzz-ckpt-XXXXXX";
    if (!::mkdtemp(root)) std::abort();
    const std::string d = std::string(root) + "/checkpoints/step-00000005";
    fs::create_directories(d);
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const int64_t count = 5;
    safetensors::write(d + "/rank-00000.safetensors",
                       {{"model/w", safetensors::DType::F32, {2, 3}, w, sizeof(w)},
                        {"optim/step", safetensors::DType::I64, {}, &count, sizeof(count)}},
                       {{"moxie.state", R"({"step":"5"})"}});
    CheckpointIndex index;
    index.step = 5;
    index.layout = "one process";
    index.world = 1;
    index.rank_files = {"rank-00000.safetensors"};
    index.files = {describe_rank_file(d, index.rank_files[0])};
    CheckpointPiece p{0, index.rank_files[0], "model/w", {0, 0}, {2, 3}, checksum(w, sizeof(w))};
    CheckpointPiece s{0, index.rank_files[0], "optim/step", {}, {}, checksum(&count, 8)};
    index.tensors = {{"model/w", "F32", {2, 3}, {p}}, {"optim/step", "I64", {}, {s}}};
    commit_checkpoint(d, index);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (arg.empty() || arg[0] == '-') continue;
    std::error_code ec;
    fs::create_directories(arg, ec);
    if (!fs::is_empty(arg, ec)) return 0;
    // The seed: the valid index's payload, framed as version 2 (mode 0).
    const std::string payload = read_framed_file(folder() + "/index.pb", kMagic, 2);
    write_file_atomically(arg + "/seed-index-v2", std::string(1, '\0') + payload, "seed");
    write_file_atomically(arg + "/seed-index-v1", std::string(1, '\1') + payload, "seed");
    write_file_atomically(
        arg + "/seed-index-file",
        std::string(1, '\2') + read_small_file(folder() + "/index.pb", "seed", 1 << 20), "seed");
    return 0;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string& dir = folder();
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string index_pb = dir + "/index.pb";
  switch (data[0] % 3) {
    case 0:
      write_framed_file(index_pb, kMagic, 2, rest);
      break;
    case 1:
      write_framed_file(index_pb, kMagic, 1, rest);
      break;
    default:
      write_file_atomically(index_pb, rest, "index");
  }
  try {
    const auto index = read_checkpoint_index(dir);
    for (int r = 0; r < index.world; ++r) (void)checked_rank_file(dir, index, r);
    // What the loader relies on: every piece inside its tensor.
    for (const auto& t : index.tensors)
      for (const auto& p : t.pieces)
        for (size_t d = 0; d < t.shape.size(); ++d)
          if (p.start[d] < 0 || p.start[d] + p.shape[d] > t.shape[d]) std::abort();
  } catch (const CheckpointError&) {
  }
  return 0;
}
