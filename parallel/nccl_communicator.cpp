// NCCL backend. Compiled only when CMake found NCCL (MOXIE_HAVE_NCCL).
#include "parallel/nccl_communicator.h"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/mpi_communicator.h"

#ifdef MOXIE_HAVE_NCCL
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/common/cuda_check.h"
#endif

namespace moxie {

#ifndef MOXIE_HAVE_NCCL

bool nccl_available() { return false; }
int cuda_device_count() { return 0; }
void use_gpu_of_local_rank(int, int) {
  throw std::runtime_error(
      "this build of moxie has no CUDA; rebuild where CMake finds nvcc and NCCL");
}

std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator&) {
  throw std::runtime_error("this build of moxie has no NCCL; rebuild where CMake finds nccl.h");
}

#else

namespace {

void nccl_check(ncclResult_t r, const char* call, const char* file, int line) {
  if (r != ncclSuccess) {
    throw std::runtime_error(std::string(call) + " failed: " + ncclGetErrorString(r) + " (" + file +
                             ":" + std::to_string(line) + ")");
  }
}
#define MOXIE_NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)

ncclDataType_t nccl_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return ncclFloat32;
    case torch::kDouble:
      return ncclFloat64;
    case torch::kHalf:
      return ncclFloat16;
    case torch::kBFloat16:
      return ncclBfloat16;
    case torch::kLong:
      return ncclInt64;
    case torch::kInt:
      return ncclInt32;
    case torch::kByte:
      return ncclUint8;
    default:
      throw std::invalid_argument(std::string("NCCL cannot carry ") +
                                  c10::toString(t.scalar_type()));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
  }
  return ncclSum;
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(MpiCommunicator& bootstrap)
      : rank_(bootstrap.rank()),
        size_(bootstrap.size()),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true)) {
    ncclUniqueId id;
    if (rank_ == 0) MOXIE_NCCL_CHECK(ncclGetUniqueId(&id));
    auto bytes = torch::from_blob(&id, {static_cast<int64_t>(sizeof(id))}, torch::kByte);
    bootstrap.broadcast(bytes, 0);
    MOXIE_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    Ordered o(*this, {t});
    MOXIE_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), nccl_op(op),
                                   comm_, stream_.stream()));
  }
  torch::Tensor all_gather(const torch::Tensor& t) override {
    auto sizes = t.sizes().vec();
    if (sizes.empty()) sizes.push_back(1);
    sizes[0] *= size_;
    auto out = torch::empty(sizes, t.options());
    Ordered o(*this, {t, out});
    MOXIE_NCCL_CHECK(ncclAllGather(t.data_ptr(), out.data_ptr(), t.numel(), nccl_type(t), comm_,
                                   stream_.stream()));
    return out;
  }
  torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp op) override {
    if (t.dim() == 0 || t.size(0) % size_ != 0) {
      throw std::invalid_argument("reduce_scatter: dim 0 must divide into " +
                                  std::to_string(size_) + " equal slices");
    }
    auto sizes = t.sizes().vec();
    sizes[0] /= size_;
    auto out = torch::empty(sizes, t.options());
    Ordered o(*this, {t, out});
    MOXIE_NCCL_CHECK(ncclReduceScatter(t.data_ptr(), out.data_ptr(), out.numel(), nccl_type(t),
                                       nccl_op(op), comm_, stream_.stream()));
    return out;
  }
  void broadcast(torch::Tensor& t, int root) override {
    Ordered o(*this, {t});
    MOXIE_NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), root, comm_,
                                   stream_.stream()));
  }
  void barrier() override {
    // A one-element all-reduce, waited for on the host: the only host sync here.
    auto token = torch::zeros({1}, torch::TensorOptions().device(torch::kCUDA));
    all_reduce(token, ReduceOp::kSum);
    MOXIE_CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream().stream()));
  }
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override {
    auto out = torch::empty(all_to_all_sizes(input, send_rows, recv_rows), input.options());
    Ordered o(*this, {input, out});
    enqueue_all_to_all(input, send_rows, recv_rows, out, SelfRows::kCopy);
    return out;
  }
  // Already asynchronous on the NCCL stream: the returned op makes the
  // caller's stream wait for it, so work queued before wait() overlaps it.
  std::unique_ptr<PendingOp> all_to_all_async(const torch::Tensor& input,
                                              const std::vector<int64_t>& send_rows,
                                              const std::vector<int64_t>& recv_rows,
                                              const torch::Tensor& out, SelfRows self) override {
    if (out.sizes().vec() != all_to_all_sizes(input, send_rows, recv_rows) ||
        out.scalar_type() != input.scalar_type()) {
      throw std::invalid_argument("all_to_all_async: out must have the input's dtype and " +
                                  std::to_string(out.dim() ? out.size(0) : 0) +
                                  " must be the sum of recv_rows");
    }
    ready_on_nccl_stream({input, out});
    enqueue_all_to_all(input, send_rows, recv_rows, out, self);
    auto done = std::make_unique<at::cuda::CUDAEvent>();
    done->record(stream_);
    return std::make_unique<StreamPendingOp>(std::move(done));
  }

 private:
  // The NCCL stream waits for the caller's queued work; the tensors' memory is
  // kept from reuse until the NCCL stream is done with it.
  void ready_on_nccl_stream(std::initializer_list<torch::Tensor> tensors) {
    for (const auto& t : tensors) {
      if (!t.is_cuda() || !t.is_contiguous()) {
        throw std::invalid_argument("NCCL collectives take contiguous CUDA tensors");
      }
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream_);
    }
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream());
    ready.block(stream_);
  }

  // The caller's current stream (at wait, or at destruction if never waited)
  // waits for `done`, recorded on the NCCL stream after the collective.
  class StreamPendingOp : public PendingOp {
   public:
    explicit StreamPendingOp(std::unique_ptr<at::cuda::CUDAEvent> done) : done_(std::move(done)) {}
    ~StreamPendingOp() override {
      if (done_) done_->block(c10::cuda::getCurrentCUDAStream());
    }
    void wait() override {
      if (!done_) return;
      done_->block(c10::cuda::getCurrentCUDAStream());
      done_.reset();
    }

   private:
    std::unique_ptr<at::cuda::CUDAEvent> done_;
  };

  std::vector<int64_t> all_to_all_sizes(const torch::Tensor& input,
                                        const std::vector<int64_t>& send_rows,
                                        const std::vector<int64_t>& recv_rows) const {
    if (static_cast<int>(send_rows.size()) != size_ ||
        static_cast<int>(recv_rows.size()) != size_) {
      throw std::invalid_argument("all_to_all: need one send and one receive count per rank");
    }
    int64_t recv_total = 0;
    for (auto r : recv_rows) recv_total += r;
    auto sizes = input.sizes().vec();
    sizes[0] = recv_total;
    return sizes;
  }

  // Grouped sends and receives on the NCCL stream (ordering is the caller's).
  void enqueue_all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                          const std::vector<int64_t>& recv_rows, const torch::Tensor& out,
                          SelfRows self) {
    int64_t recv_total = out.dim() ? out.size(0) : 0;
    const int64_t row = input.dim() > 0 && input.size(0) > 0
                            ? input.numel() / input.size(0)
                            : out.numel() / std::max<int64_t>(1, recv_total);
    const auto type = nccl_type(input);
    const auto* send = static_cast<const char*>(input.data_ptr());
    auto* recv = static_cast<char*>(out.data_ptr());
    const int64_t bytes_per_row = row * input.element_size();
    int64_t s_off = 0, r_off = 0;
    MOXIE_NCCL_CHECK(ncclGroupStart());
    for (int p = 0; p < size_; ++p) {
      if (self == SelfRows::kInPlace && p == rank_) {
        s_off += send_rows[p];
        r_off += recv_rows[p];
        continue;
      }
      if (send_rows[p] > 0) {
        MOXIE_NCCL_CHECK(ncclSend(send + s_off * bytes_per_row, send_rows[p] * row, type, p, comm_,
                                  stream_.stream()));
      }
      if (recv_rows[p] > 0) {
        MOXIE_NCCL_CHECK(ncclRecv(recv + r_off * bytes_per_row, recv_rows[p] * row, type, p, comm_,
                                  stream_.stream()));
      }
      s_off += send_rows[p];
      r_off += recv_rows[p];
    }
    MOXIE_NCCL_CHECK(ncclGroupEnd());
  }

  // Orders one collective between the caller's stream and the NCCL stream.
  class Ordered {
   public:
    Ordered(NcclCommunicator& c, std::initializer_list<torch::Tensor> tensors) : c_(c) {
      c.ready_on_nccl_stream(tensors);
    }
    ~Ordered() {
      at::cuda::CUDAEvent done;
      done.record(c_.stream_);
      done.block(c10::cuda::getCurrentCUDAStream());
    }

   private:
    NcclCommunicator& c_;
  };

  int rank_, size_;
  c10::cuda::CUDAStream stream_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

bool nccl_available() { return cuda_device_count() > 0; }

int cuda_device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

void use_gpu_of_local_rank(int local_rank, int local_size) {
  const int n = cuda_device_count();
  if (local_size > n) {
    throw std::runtime_error("this node runs " + std::to_string(local_size) + " ranks but has " +
                             std::to_string(n) + " visible GPU(s), and NCCL needs one GPU per " +
                             "rank; launch at most " + std::to_string(n) + " rank(s) per node");
  }
  MOXIE_CUDA_CHECK(cudaSetDevice(local_rank));
}

std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator& bootstrap) {
  if (!nccl_available()) {
    throw std::runtime_error("no CUDA device is visible to rank " +
                             std::to_string(bootstrap.rank()) +
                             "; the NCCL backend needs one GPU per rank");
  }
  return std::make_unique<NcclCommunicator>(bootstrap);
}

#endif

}  // namespace moxie
