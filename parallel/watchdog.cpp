// The CPU watchdog (see watchdog.h).
#include "parallel/watchdog.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>

namespace moxie {
namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string heartbeat_path(const std::string& folder, int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d", rank);
  return folder + "/" + name;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

}  // namespace

std::string describe_stall(int me, int64_t my_progress, double waited_s, double timeout_s,
                           double stale_s, const std::vector<Heartbeat>& beats) {
  std::vector<int> stopped, behind, unknown;
  for (const auto& b : beats) {
    if (b.rank == me) continue;
    if (b.age_s < 0) {
      unknown.push_back(b.rank);
    } else if (b.age_s > stale_s) {
      stopped.push_back(b.rank);
    } else if (b.progress < my_progress) {
      behind.push_back(b.rank);
    }
  }
  std::string line = "watchdog: rank " + std::to_string(me) + " made no progress for " +
                     seconds(waited_s) + " (parallel.collective_timeout_s=" + seconds(timeout_s) +
                     ", after step " + std::to_string(my_progress) + ")";
  if (!stopped.empty()) {
    line += "; rank " + rank_list(stopped) + " stopped responding (no heartbeat for more than " +
            seconds(stale_s) + ": stopped, hung or swapped out)";
  }
  if (!behind.empty()) {
    line += "; rank " + rank_list(behind) +
            " alive but behind (fewer steps done: stuck in a collective the others finished)";
  }
  if (!unknown.empty()) {
    line += "; no heartbeat readable from rank " + rank_list(unknown) +
            " (is train.run_dir on a file system every node sees?)";
  }
  if (stopped.empty() && behind.empty() && unknown.empty()) {
    line += "; every rank is alive at the same step: a deadlock or mismatched collectives";
  }
  return line + "; ending the job";
}

Watchdog::Watchdog(std::string folder, int rank, int world, double timeout_s)
    : folder_(std::move(folder)),
      rank_(rank),
      world_(world),
      timeout_s_(timeout_s),
      interval_s_(std::min(1.0, timeout_s / 5)),
      last_progress_ns_(now_ns()) {
  if (!(timeout_s > 0)) throw std::invalid_argument("watchdog timeout must be positive");
  std::error_code ec;
  std::filesystem::create_directories(folder_, ec);
  const std::string path = heartbeat_path(folder_, rank_);
  ::unlink(path.c_str());  // a link planted there is removed, never written through
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::runtime_error("cannot create the heartbeat file " + path + ": " +
                             std::strerror(errno) + " (is train.run_dir writable?)");
  }
  beat(0);
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

void Watchdog::progress() {
  progress_.fetch_add(1);
  last_progress_ns_ = now_ns();
}

// "progress wall-clock-ns\n", padded to a fixed width so a rewrite in place
// never leaves a longer old line's tail.
void Watchdog::beat(int64_t progress) {
  char line[64];
  const int n = std::snprintf(line, sizeof(line), "%20lld %20lld\n",
                              static_cast<long long>(progress), static_cast<long long>(now_ns()));
  if (n > 0) (void)::pwrite(fd_, line, static_cast<size_t>(n), 0);
}

std::vector<Heartbeat> Watchdog::read_all() const {
  std::vector<Heartbeat> beats;
  const int64_t now = now_ns();
  for (int r = 0; r < world_; ++r) {
    Heartbeat b;
    b.rank = r;
    const int fd =
        ::open(heartbeat_path(folder_, r).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd >= 0) {
      char line[64] = {};
      const ssize_t got = ::pread(fd, line, sizeof(line) - 1, 0);
      ::close(fd);
      long long progress = 0, at = 0;
      if (got > 0 && std::sscanf(line, "%lld %lld", &progress, &at) == 2) {
        b.progress = progress;
        b.age_s = static_cast<double>(now - at) * 1e-9;
      }
    }
    beats.push_back(b);
  }
  return beats;
}

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::duration<double>(interval_s_));
    if (stop_) break;
    const int64_t progress = progress_.load();
    beat(progress);
    const double waited = static_cast<double>(now_ns() - last_progress_ns_.load()) * 1e-9;
    if (waited <= timeout_s_) continue;
    // Stale: several beats missed (a live rank writes every interval).
    const double stale = std::max(3 * interval_s_, timeout_s_ / 2);
    std::cerr << "moxie: " << describe_stall(rank_, progress, waited, timeout_s_, stale, read_all())
              << std::endl;
    std::_Exit(3);
  }
}

}  // namespace moxie
