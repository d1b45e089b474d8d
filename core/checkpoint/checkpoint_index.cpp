// Checkpoint index (protobuf) and folder bookkeeping.
#include "core/checkpoint/checkpoint_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/checkpoint/checkpoint.pb.h"
#include "core/common/crc32c.h"
#include "core/common/framed_file.h"

namespace moxie {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'M', 'O', 'X', 'C', 'K', 'P', 'T', '1'};
constexpr uint32_t kFormatVersion = 1;

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
  ckpt::Index pb;
  pb.set_format_version(kFormatVersion);
  pb.set_step(index.step);
  pb.set_layout(index.layout);
  pb.set_world(static_cast<uint32_t>(index.world));
  for (const auto& f : index.rank_files) pb.add_rank_files(f);
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
  std::string payload;
  try {
    payload = read_framed_file(path.string(), kMagic, kFormatVersion);
  } catch (const FramedFileError& e) {
    throw CheckpointError(std::string("checkpoint index ") + e.what());
  }
  ckpt::Index pb;
  if (!pb.ParseFromString(payload)) throw CheckpointError(path.string() + " does not parse");
  CheckpointIndex index;
  index.step = pb.step();
  index.layout = pb.layout();
  index.world = static_cast<int>(pb.world());
  index.rank_files.assign(pb.rank_files().begin(), pb.rank_files().end());
  for (const auto& pt : pb.tensors()) {
    CheckpointTensor t;
    t.name = pt.name();
    t.dtype = pt.dtype();
    t.shape.assign(pt.shape().begin(), pt.shape().end());
    for (const auto& pp : pt.pieces()) {
      CheckpointPiece p;
      p.rank = static_cast<int>(pp.rank());
      p.file = pp.file();
      p.name = pp.name();
      p.start.assign(pp.start().begin(), pp.start().end());
      p.shape.assign(pp.shape().begin(), pp.shape().end());
      p.crc32c = pp.crc32c();
      if (p.start.size() != t.shape.size() || p.shape.size() != t.shape.size()) {
        throw CheckpointError(path.string() + ": a piece of " + t.name + " has the wrong rank");
      }
      t.pieces.push_back(std::move(p));
    }
    index.tensors.push_back(std::move(t));
  }
  return index;
}

void prune_checkpoints(const std::string& run_dir, int keep) {
  const auto committed = committed_checkpoints(run_dir);
  if (committed.empty()) return;
  const int64_t newest = step_of(fs::path(committed.back()));
  std::error_code ec;
  for (size_t i = 0; i + static_cast<size_t>(std::max(keep, 1)) < committed.size(); ++i) {
    fs::remove_all(committed[i], ec);
  }
  for (const auto& e : fs::directory_iterator(fs::path(run_dir) / "checkpoints", ec)) {
    const int64_t step = step_of(e.path());
    if (step >= 0 && step < newest && !is_committed(e.path().string()))
      fs::remove_all(e.path(), ec);
  }
}

}  // namespace moxie
