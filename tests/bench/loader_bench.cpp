// Loader throughput against a plain sequential read of the same shard files,
// both from the disk: before every timed pass the files are dropped from the
// page cache (posix_fadvise DONTNEED, no root needed for clean pages).
// Alternating repeats; medians. Prints one JSON object.
//
// Usage: bench_loader DATASET [--seq-len N] [--rows N] [--threads N]
//        [--repeats N] [--verify | --no-verify] [--warm: the loader's pass from the page cache]
// Threads and verification default to LoaderOptions' defaults.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/common/allocator.h"
#include "data/loader.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<std::string> shard_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".shard" || e.path().filename() == "manifest.pb")
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void evict(const std::vector<std::string>& files) {
  for (const auto& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Plain sequential read of every file in 1 MiB chunks: the disk's figure.
double plain_read(const std::vector<std::string>& files, uint64_t* bytes) {
  std::vector<char> buf(1 << 20);
  const auto t0 = Clock::now();
  uint64_t n = 0;
  for (const auto& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    ssize_t r;
    while ((r = ::read(fd, buf.data(), buf.size())) > 0) n += static_cast<uint64_t>(r);
    ::close(fd);
  }
  *bytes = n;
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_loader DATASET [--seq-len N] [--rows N] [--threads N] [--repeats N] "
                 "[--verify | --no-verify]\n");
    return 2;
  }
  moxie::keep_freed_memory_for_reuse();  // as `moxie train` does
  moxie::LoaderOptions o;
  o.path = argv[1];
  o.seq_len = 128;
  o.rows_per_rank = 16;
  const moxie::LoaderOptions defaults;
  int repeats = 3;
  bool warm = false;  // the loader's pass from the page cache (CPU cost alone)
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::atoll(argv[++i]); };
    if (a == "--seq-len")
      o.seq_len = next();
    else if (a == "--rows")
      o.rows_per_rank = next();
    else if (a == "--threads")
      o.prefetch_threads = static_cast<int>(next());
    else if (a == "--repeats")
      repeats = static_cast<int>(next());
    else if (a == "--no-verify")
      o.verify_shards = false;
    else if (a == "--verify")
      o.verify_shards = true;
    else if (a == "--warm")
      warm = true;
    else {
      std::fprintf(stderr, "bench_loader: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const auto files = shard_files(o.path);
  std::vector<double> plain_s, loader_s;
  uint64_t file_bytes = 0, samples = 0, positions = 0, batches = 0;
  for (int r = 0; r < repeats; ++r) {
    evict(files);
    plain_s.push_back(plain_read(files, &file_bytes));
    if (!warm) evict(files);
    // One epoch: every sample once (the last batch runs into the next epoch).
    const auto t0 = Clock::now();
    moxie::DatasetLoader loader(o);
    samples = loader.info().samples;
    positions = batches = 0;
    while (true) {
      auto b = loader.next();
      ++batches;
      positions += static_cast<uint64_t>(b.rows * b.row_len);
      if (b.after.epoch >= 1) break;
    }
    loader_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  const double tp = median(plain_s), tl = median(loader_s);
  std::printf(
      "{\"dataset\": \"%s\", \"file_bytes\": %llu, \"samples\": %llu, \"batches\": %llu, "
      "\"positions\": %llu, \"threads\": %d, \"verify\": %s, \"repeats\": %d,\n"
      " \"plain_read_s\": %.4f, \"plain_read_mb_s\": %.1f,\n"
      " \"loader_s\": %.4f, \"loader_mb_s\": %.1f, \"loader_samples_s\": %.1f, "
      "\"loader_positions_s\": %.1f,\n"
      " \"ratio_loader_over_plain\": %.3f, \"defaults\": %s}\n",
      o.path.c_str(), static_cast<unsigned long long>(file_bytes),
      static_cast<unsigned long long>(samples), static_cast<unsigned long long>(batches),
      static_cast<unsigned long long>(positions), o.prefetch_threads,
      o.verify_shards ? "true" : "false", repeats, tp, file_bytes / tp / 1e6, tl,
      file_bytes / tl / 1e6, samples / tl, positions / tl, tp / tl,
      o.prefetch_threads == defaults.prefetch_threads && o.verify_shards == defaults.verify_shards
          ? "true"
          : "false");
  return 0;
}
