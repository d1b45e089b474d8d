// The CPU watchdog: what NCCL's watchdog does for GPU collectives, for the
// whole step. Each rank's watchdog thread writes a heartbeat (how many steps
// this rank has finished, and when it last wrote) to a file of its own in a
// folder every rank sees; when this rank has made no progress for
// `timeout_s` (stuck in a collective, waiting for a rank that stopped or
// deadlocked), it reads the other ranks' heartbeats, prints one line naming
// the ranks whose heartbeat went stale or that are behind, and ends this
// process with exit code 3, so mpirun ends the job. MPI-free: the thread
// never calls MPI (which is not initialised for threads). Torch-free.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace moxie {

// What a rank's heartbeat file said; `age_s` < 0 when it could not be read.
struct Heartbeat {
  int rank = 0;
  int64_t progress = -1;
  double age_s = -1;
};

// The one line the watchdog prints before ending the job: `me` waited
// `waited_s` without progress; `beats` are every rank's heartbeats (this
// rank's included). Ranks whose heartbeat is older than `stale_s` are named
// as stopped; live ranks with less progress than this rank as behind.
std::string describe_stall(int me, int64_t my_progress, double waited_s, double timeout_s,
                           double stale_s, const std::vector<Heartbeat>& beats);

class Watchdog {
 public:
  // `folder` is created if missing; `timeout_s` > 0.
  Watchdog(std::string folder, int rank, int world, double timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // This rank finished a unit of work (a step, an evaluation, a checkpoint):
  // the clock restarts.
  void progress();

 private:
  void run();
  void beat(int64_t progress);
  std::vector<Heartbeat> read_all() const;

  std::string folder_;
  int rank_, world_;
  double timeout_s_, interval_s_;
  std::atomic<int64_t> progress_{0};
  std::atomic<int64_t> last_progress_ns_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  int fd_ = -1;
  std::thread thread_;
};

}  // namespace moxie
