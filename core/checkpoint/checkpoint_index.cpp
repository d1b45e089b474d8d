// Checkpoint index (protobuf) and folder bookkeeping.
#include "core/checkpoint/checkpoint_index.h"

#include <fcntl.h>
#include <google/protobuf/stubs/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/checkpoint/checkpoint.pb.h"
#include "core/common/crc32c.h"
#include "core/common/file_io.h"
#include "core/common/framed_file.h"

namespace moxie {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'M', 'O', 'X', 'C', 'K', 'P', 'T', '1'};
constexpr uint32_t kFormatVersion = kCheckpointFormatVersion;

struct DTypeSize {
  const char* name;
  uint64_t size;
};
// safetensors' dtype names (core/checkpoint/safetensors.h), the ones an index may hold.
constexpr DTypeSize kDTypes[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                 {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};

uint64_t dtype_bytes(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.size;
  return 0;
}

// Bytes of a box of this shape, or UINT64_MAX when it overflows 64 bits.
uint64_t box_bytes(const std::vector<int64_t>& shape, uint64_t element) {
  uint64_t n = element;
  for (const int64_t d : shape) {
    const auto u = static_cast<uint64_t>(d);
    if (u != 0 && n > UINT64_MAX / u) return UINT64_MAX;
    n *= u;
  }
  return n;
}

std::string dims(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

int64_t step_of(const fs::path& dir) {
  const std::string name = dir.filename().string();
  if (name.rfind("step-", 0) != 0) return -1;
  try {
    return std::stoll(name.substr(5));
  } catch (...) {
    return -1;
  }
}

}  // namespace

uint32_t checksum(const void* data, size_t n) { return crc32c(data, n); }

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  return (fs::path(run_dir) / "checkpoints" / name).string();
}

bool is_committed(const std::string& dir) { return fs::exists(fs::path(dir) / kCommitMarker); }

std::vector<std::string> committed_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int64_t step = step_of(e.path());
    if (step >= 0 && is_committed(e.path().string())) found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

void commit_checkpoint(const std::string& dir, const CheckpointIndex& index) {
  if (index.files.size() != index.rank_files.size() ||
      index.rank_files.size() != static_cast<size_t>(index.world)) {
    throw CheckpointError("checkpoint " + dir + ": the index to commit describes " +
                          std::to_string(index.files.size()) + " rank files' headers and lists " +
                          std::to_string(index.rank_files.size()) + " for a world of " +
                          std::to_string(index.world));
  }
  ckpt::Index pb;
  pb.set_format_version(kFormatVersion);
  pb.set_step(index.step);
  pb.set_layout(index.layout);
  pb.set_world(static_cast<uint32_t>(index.world));
  for (const auto& f : index.rank_files) pb.add_rank_files(f);
  for (const auto& f : index.files) {
    auto* pf = pb.add_files();
    pf->set_name(f.name);
    pf->set_file_bytes(f.file_bytes);
    pf->set_header_bytes(f.header_bytes);
    pf->set_header_crc32c(f.header_crc32c);
  }
  for (const auto& t : index.tensors) {
    auto* pt = pb.add_tensors();
    pt->set_name(t.name);
    pt->set_dtype(t.dtype);
    for (auto d : t.shape) pt->add_shape(d);
    for (const auto& p : t.pieces) {
      auto* pp = pt->add_pieces();
      pp->set_rank(static_cast<uint32_t>(p.rank));
      pp->set_file(p.file);
      pp->set_name(p.name);
      for (auto d : p.start) pp->add_start(d);
      for (auto d : p.shape) pp->add_shape(d);
      pp->set_crc32c(p.crc32c);
    }
  }
  try {
    write_framed_file((fs::path(dir) / kIndexName).string(), kMagic, kFormatVersion,
                      pb.SerializeAsString());
    // The marker's content is informational; its existence is the commit.
    write_framed_file((fs::path(dir) / kCommitMarker).string(), kMagic, kFormatVersion,
                      "step " + std::to_string(index.step));
  } catch (const FramedFileError& e) {
    throw CheckpointError(std::string(e.what()) + "; earlier checkpoints are untouched");
  }
}

CheckpointIndex read_checkpoint_index(const std::string& dir) {
  if (!fs::is_directory(dir)) {
    throw CheckpointError(
        "checkpoint folder " + dir +
        " does not exist; name a folder under RUN/checkpoints, or use --resume latest");
  }
  if (!is_committed(dir)) {
    throw CheckpointError("checkpoint " + dir + " was never committed (no " + kCommitMarker +
                          "): its save did not finish; use an earlier one");
  }
  const fs::path path = fs::path(dir) / kIndexName;
  const std::string file = path.string();
  std::string payload;
  uint32_t version = 0;
  try {
    // The version first (framed_file.h: bytes 8-11), so an index of an
    // older format is read as such and a newer one refused by name.
    {
      const InputFile in(file, "checkpoint index");
      char head[12] = {};
      if (in.size() >= sizeof(head)) in.read_at(0, head, sizeof(head));
      std::memcpy(&version, head + 8, 4);
      if (std::memcmp(head, kMagic, 8) == 0 && version > kFormatVersion) {
        throw CheckpointError(file + ": format version " + std::to_string(version) +
                              " is newer than this moxie reads (1 to " +
                              std::to_string(kFormatVersion) + "); use a newer moxie");
      }
      if (version == 0) version = kFormatVersion;  // not an index: the frame says why
    }
    payload = read_framed_file(file, kMagic, version);
  } catch (const FramedFileError& e) {
    throw CheckpointError(std::string("checkpoint index ") + e.what());
  } catch (const FileError& e) {
    throw CheckpointError(std::string("checkpoint index: ") + e.what());
  }
  ckpt::Index pb;
  {
    // A damaged payload is this error alone, not also protobuf's log line.
    google::protobuf::LogSilencer quiet;
    if (!pb.ParseFromString(payload)) throw CheckpointError(file + " does not parse");
  }
  auto bad = [&](const std::string& why) { return CheckpointError(file + ": " + why); };
  CheckpointIndex index;
  index.format_version = version;
  index.step = pb.step();
  index.layout = pb.layout();
  if (pb.world() < 1 || pb.world() > kMaxCheckpointWorld) {
    throw bad("world is " + std::to_string(pb.world()) + ", not between 1 and " +
              std::to_string(kMaxCheckpointWorld) + "; the index is damaged");
  }
  index.world = static_cast<int>(pb.world());
  if (index.step < 0) throw bad("step is " + std::to_string(index.step) + ", negative");
  fs::path folder = fs::path(dir).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();
  const int64_t folder_step = step_of(folder);
  if (folder_step >= 0 && folder_step != index.step) {
    throw bad("the index is of step " + std::to_string(index.step) + " but its folder is step " +
              std::to_string(folder_step) + "; it was copied from another checkpoint");
  }
  if (static_cast<uint64_t>(pb.rank_files_size()) != pb.world()) {
    throw bad("it lists " + std::to_string(pb.rank_files_size()) + " rank files for a world of " +
              std::to_string(pb.world()));
  }
  index.rank_files.assign(pb.rank_files().begin(), pb.rank_files().end());
  for (const auto& name : index.rank_files) {
    try {
      (void)resolve_inside(dir, name, "checkpoint index rank file");
    } catch (const FileError& e) {
      throw bad(e.what());
    }
  }
  if (version >= 2) {
    if (static_cast<uint64_t>(pb.files_size()) != pb.world()) {
      throw bad("it describes " + std::to_string(pb.files_size()) +
                " rank files' headers for a world of " + std::to_string(pb.world()));
    }
    for (int r = 0; r < pb.files_size(); ++r) {
      const auto& pf = pb.files(r);
      if (pf.name() != index.rank_files[static_cast<size_t>(r)]) {
        throw bad("rank " + std::to_string(r) + "'s file is '" +
                  excerpt(index.rank_files[static_cast<size_t>(r)], 60) +
                  "' but its header record names '" + excerpt(pf.name(), 60) + "'");
      }
      if (pf.header_bytes() < 8 || pf.header_bytes() > pf.file_bytes() ||
          pf.header_bytes() > kMaxSafetensorsHeader + 8) {
        throw bad(pf.name() + ": header_bytes is " + std::to_string(pf.header_bytes()) +
                  " for a file of " + std::to_string(pf.file_bytes()) + " bytes");
      }
      index.files.push_back({pf.name(), pf.file_bytes(), pf.header_bytes(), pf.header_crc32c()});
    }
  }
  std::map<std::string, size_t> seen;
  for (const auto& pt : pb.tensors()) {
    CheckpointTensor t;
    t.name = pt.name();
    const std::string what = "tensor '" + excerpt(t.name, 80) + "'";
    if (!seen.emplace(t.name, seen.size()).second) throw bad(what + " is listed twice");
    t.dtype = pt.dtype();
    const uint64_t element = dtype_bytes(t.dtype);
    if (element == 0) {
      throw bad(what + " has dtype '" + excerpt(t.dtype, 20) +
                "', not one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL");
    }
    if (static_cast<uint64_t>(pt.shape_size()) > kMaxTensorDims) {
      throw bad(what + " has " + std::to_string(pt.shape_size()) + " dimensions, more than " +
                std::to_string(kMaxTensorDims));
    }
    t.shape.assign(pt.shape().begin(), pt.shape().end());
    for (const int64_t d : t.shape)
      if (d < 0) throw bad(what + " has shape " + dims(t.shape) + " with a negative extent");
    for (const auto& pp : pt.pieces()) {
      CheckpointPiece p;
      p.rank = static_cast<int>(std::min<uint32_t>(pp.rank(), INT32_MAX));
      p.file = pp.file();
      p.name = pp.name();
      p.start.assign(pp.start().begin(), pp.start().end());
      p.shape.assign(pp.shape().begin(), pp.shape().end());
      p.crc32c = pp.crc32c();
      if (p.start.size() != t.shape.size() || p.shape.size() != t.shape.size()) {
        throw CheckpointError(file + ": a piece of " + t.name + " has the wrong rank");
      }
      if (pp.rank() >= pb.world()) {
        throw bad("a piece of " + what + " is on rank " + std::to_string(pp.rank()) +
                  " of a world of " + std::to_string(pb.world()));
      }
      if (p.file != index.rank_files[static_cast<size_t>(p.rank)]) {
        throw bad("a piece of " + what + " names the file '" + excerpt(p.file, 60) +
                  "', not rank " + std::to_string(p.rank) + "'s file " +
                  index.rank_files[static_cast<size_t>(p.rank)]);
      }
      for (size_t d = 0; d < t.shape.size(); ++d) {
        if (p.start[d] < 0 || p.shape[d] < 0 || p.start[d] > t.shape[d] ||
            p.shape[d] > t.shape[d] - p.start[d]) {
          throw bad("a piece of " + what + " at " + dims(p.start) + " of shape " + dims(p.shape) +
                    " lies outside the tensor's shape " + dims(t.shape));
        }
      }
      if (!index.files.empty()) {
        const auto& f = index.files[static_cast<size_t>(p.rank)];
        const uint64_t need = box_bytes(p.shape, element);
        if (need > f.file_bytes - f.header_bytes) {
          throw bad("a piece of " + what + " needs " + std::to_string(need) + " bytes but " +
                    f.name + " holds " + std::to_string(f.file_bytes - f.header_bytes) +
                    " after its header");
        }
      }
      t.pieces.push_back(std::move(p));
    }
    index.tensors.push_back(std::move(t));
  }
  return index;
}

CheckpointFile describe_rank_file(const std::string& dir, const std::string& name) {
  const std::string path = (fs::path(dir) / name).string();
  try {
    const InputFile in(path, "checkpoint rank file");
    uint8_t len[8];
    in.read_at(0, len, sizeof(len));
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | len[i];
    checked_count(header, std::min<uint64_t>(kMaxSafetensorsHeader, in.size() - 8), path,
                  "safetensors header length");
    std::string bytes(8 + header, '\0');
    in.read_at(0, bytes.data(), bytes.size());
    return {name, in.size(), bytes.size(), crc32c(bytes.data(), bytes.size())};
  } catch (const FileError& e) {
    throw CheckpointError(e.what());
  }
}

std::string checked_rank_file(const std::string& dir, const CheckpointIndex& index, int rank) {
  if (rank < 0 || static_cast<size_t>(rank) >= index.rank_files.size()) {
    throw CheckpointError("checkpoint " + dir + " has no rank " + std::to_string(rank));
  }
  const std::string& name = index.rank_files[static_cast<size_t>(rank)];
  std::string path;
  try {
    path = resolve_inside(dir, name, "checkpoint index rank file").string();
  } catch (const FileError& e) {
    throw CheckpointError(std::string("checkpoint ") + dir + ": " + e.what());
  }
  if (index.files.empty()) return path;  // format version 1: nothing recorded to check
  const auto& want = index.files[static_cast<size_t>(rank)];
  auto damaged = [&](const std::string& why) {
    return CheckpointError("checkpoint " + dir + ": " + name + " " + why +
                           " (the file is damaged or was replaced after the commit); "
                           "resume from an earlier checkpoint");
  };
  std::error_code ec;
  const auto kind = file_kind(path);
  if (kind != "a regular file") throw damaged("is " + kind + ", not a regular file");
  const uint64_t size = fs::file_size(path, ec);
  if (ec) throw damaged("cannot be read: " + ec.message());
  if (size != want.file_bytes) {
    throw damaged("is " + std::to_string(size) + " bytes but was committed with " +
                  std::to_string(want.file_bytes) + (size < want.file_bytes ? ": truncated" : ""));
  }
  CheckpointFile got;
  try {
    got = describe_rank_file(dir, name);
  } catch (const CheckpointError& e) {
    throw damaged(std::string("has an unreadable header: ") + e.what());
  }
  if (got.header_bytes != want.header_bytes) {
    throw damaged("has a header of " + std::to_string(got.header_bytes) +
                  " bytes but was committed with " + std::to_string(want.header_bytes));
  }
  if (got.header_crc32c != want.header_crc32c) {
    throw damaged(
        "has a header (dtypes, shapes, offsets, piece table, step, RNG and data "
        "state) that does not match the checksum in " +
        std::string(kIndexName));
  }
  return path;
}

std::string checkpoint_damage(const std::string& dir) {
  try {
    const auto index = read_checkpoint_index(dir);
    for (int r = 0; r < index.world; ++r) (void)checked_rank_file(dir, index, r);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

void prune_checkpoints(const std::string& run_dir, int keep) {
  const auto committed = committed_checkpoints(run_dir);
  if (committed.empty()) return;
  const int64_t newest = step_of(fs::path(committed.back()));
  // Newest first: the first `keep` that check out are kept; everything
  // older than the oldest of them goes. Damaged ones newer than that stay.
  size_t good = 0, oldest_kept = committed.size();
  for (size_t i = committed.size(); i-- > 0 && good < static_cast<size_t>(std::max(keep, 1));) {
    if (checkpoint_damage(committed[i]).empty()) {
      ++good;
      oldest_kept = i;
    }
  }
  std::error_code ec;
  if (good == static_cast<size_t>(std::max(keep, 1))) {
    for (size_t i = 0; i < oldest_kept; ++i) fs::remove_all(committed[i], ec);
  }
  for (const auto& e : fs::directory_iterator(fs::path(run_dir) / "checkpoints", ec)) {
    const int64_t step = step_of(e.path());
    if (step >= 0 && step < newest && !is_committed(e.path().string()))
      fs::remove_all(e.path(), ec);
  }
}

}  // namespace moxie
