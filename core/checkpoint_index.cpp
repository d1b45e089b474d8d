// Checkpoint index (protobuf) and folder bookkeeping.
#include "core/checkpoint_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/checkpoint.pb.h"
#include "data/crc32c.h"

namespace moxie {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'M', 'O', 'X', 'C', 'K', 'P', 'T', '1'};
constexpr uint32_t kFormatVersion = 1;

void write_atomically(const fs::path& path, const std::string& bytes) {
  const std::string tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw CheckpointError("cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  bool ok = true;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      ok = false;
      break;
    }
    done += static_cast<size_t>(n);
  }
  const int saved = errno;
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw CheckpointError("cannot write " + path.string() + ": " + std::strerror(saved ? saved : errno) +
                          "; earlier checkpoints are untouched");
  }
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
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
  const std::string payload = pb.SerializeAsString();
  std::string bytes(kMagic, 8);
  const uint64_t size = payload.size();
  const uint32_t crc = crc32c(payload.data(), payload.size());
  bytes.append(reinterpret_cast<const char*>(&size), 8);
  bytes.append(reinterpret_cast<const char*>(&crc), 4);
  bytes += payload;
  write_atomically(fs::path(dir) / kIndexName, bytes);
  write_atomically(fs::path(dir) / kCommitMarker, "step " + std::to_string(index.step) + "\n");
}

CheckpointIndex read_checkpoint_index(const std::string& dir) {
  if (!fs::is_directory(dir)) {
    throw CheckpointError("checkpoint folder " + dir + " does not exist; name a folder under RUN/checkpoints, or use --resume latest");
  }
  if (!is_committed(dir)) {
    throw CheckpointError("checkpoint " + dir + " was never committed (no " + kCommitMarker +
                          "): its save did not finish; use an earlier one");
  }
  const fs::path path = fs::path(dir) / kIndexName;
  const std::string bytes = read_all(path);
  uint64_t size = 0;
  uint32_t crc = 0;
  if (bytes.size() < 20 || std::memcmp(bytes.data(), kMagic, 8) != 0) {
    throw CheckpointError(path.string() + " is not a moxie checkpoint index (bad magic or truncated)");
  }
  std::memcpy(&size, bytes.data() + 8, 8);
  std::memcpy(&crc, bytes.data() + 16, 4);
  if (size != bytes.size() - 20 || crc32c(bytes.data() + 20, size) != crc) {
    throw CheckpointError(path.string() + ": checksum mismatch or truncated");
  }
  ckpt::Index pb;
  if (!pb.ParseFromArray(bytes.data() + 20, static_cast<int>(size))) {
    throw CheckpointError(path.string() + " does not parse");
  }
  if (pb.format_version() != kFormatVersion) {
    throw CheckpointError(path.string() + ": format version " + std::to_string(pb.format_version()) +
                          " is not " + std::to_string(kFormatVersion));
  }
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
    if (step >= 0 && step < newest && !is_committed(e.path().string())) fs::remove_all(e.path(), ec);
  }
}

}  // namespace moxie
