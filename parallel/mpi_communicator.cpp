// MPI backend: collectives on contiguous CPU tensors.
#include "parallel/mpi_communicator.h"

#include <climits>
#include <memory>
#include <stdexcept>
#include <string>

namespace moxie {
namespace {

MPI_Datatype reduce_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return MPI_FLOAT;
    case torch::kDouble:
      return MPI_DOUBLE;
    case torch::kLong:
      return MPI_INT64_T;
    case torch::kInt:
      return MPI_INT32_T;
    default:
      throw std::invalid_argument(
          std::string("MPI reductions take float32, float64, int32 or int64 "
                      "tensors, not ") +
          c10::toString(t.scalar_type()) + "; reduce gradients in float32");
  }
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

void check_cpu_contiguous(const torch::Tensor& t, const char* what) {
  if (!t.device().is_cpu()) {
    throw std::invalid_argument(std::string(what) + ": the MPI backend carries CPU tensors only");
  }
  if (!t.is_contiguous())
    throw std::invalid_argument(std::string(what) + ": tensor must be contiguous");
}

int as_int(int64_t n, const char* what) {
  if (n > INT_MAX)
    throw std::invalid_argument(std::string(what) + ": count exceeds MPI's int range");
  return static_cast<int>(n);
}

// A datatype of `bytes` contiguous bytes, freed on scope exit.
class ContiguousType {
 public:
  explicit ContiguousType(int64_t bytes) {
    MOXIE_MPI_CHECK(MPI_Type_contiguous(as_int(bytes, "row size"), MPI_BYTE, &type_));
    MOXIE_MPI_CHECK(MPI_Type_commit(&type_));
  }
  ~ContiguousType() { MPI_Type_free(&type_); }
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_;
};

}  // namespace

void mpi_check(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw std::runtime_error(std::string(call) + " failed on rank " + std::to_string(rank) + ": " +
                           std::string(text, len) + " (" + file + ":" + std::to_string(line) + ")");
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int provided = 0;
  MOXIE_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void MpiRuntime::abort_job(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) {
  MOXIE_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, Adopt) : comm_(comm) {
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int color, int key) const {
  MPI_Comm out = MPI_COMM_NULL;
  MOXIE_MPI_CHECK(MPI_Comm_split(comm_, color, key, &out));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(out, Adopt{}));
}

bool MpiCommunicator::same_ranks(const MpiCommunicator& other) const {
  int result = MPI_UNEQUAL;
  MOXIE_MPI_CHECK(MPI_Comm_compare(comm_, other.comm_, &result));
  return result == MPI_IDENT || result == MPI_CONGRUENT;
}

namespace {
// MPI_Iallreduce in flight on `t` (kept alive until waited).
class MpiPendingOp : public PendingOp {
 public:
  MpiPendingOp(torch::Tensor t, MPI_Request request, double divide_by)
      : t_(std::move(t)), request_(request), divide_by_(divide_by) {}
  ~MpiPendingOp() override {
    // Never leave a request behind a freed buffer; errors cannot throw here.
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    MOXIE_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    if (divide_by_ != 1.0) t_.div_(divide_by_);
  }

 private:
  torch::Tensor t_;
  MPI_Request request_;
  double divide_by_;
};
}  // namespace

std::unique_ptr<PendingOp> MpiCommunicator::all_reduce_async(torch::Tensor& t, ReduceOp op) {
  check_cpu_contiguous(t, "all_reduce_async");
  MPI_Request request = MPI_REQUEST_NULL;
  MOXIE_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), as_int(t.numel(), "all_reduce_async"),
                                 reduce_type(t), mpi_op(op), comm_, &request));
  return std::make_unique<MpiPendingOp>(t, request, op == ReduceOp::kAvg ? size_ : 1.0);
}

void MpiCommunicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  check_cpu_contiguous(t, "all_reduce");
  MOXIE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), as_int(t.numel(), "all_reduce"),
                                reduce_type(t), mpi_op(op), comm_));
  if (op == ReduceOp::kAvg) t.div_(size_);
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& t) {
  check_cpu_contiguous(t, "all_gather");
  auto sizes = t.sizes().vec();
  if (sizes.empty()) sizes.push_back(1);
  sizes[0] *= size_;
  auto out = torch::empty(sizes, t.options());
  ContiguousType element(t.element_size());
  const int n = as_int(t.numel(), "all_gather");
  MOXIE_MPI_CHECK(
      MPI_Allgather(t.data_ptr(), n, element.get(), out.data_ptr(), n, element.get(), comm_));
  return out;
}

torch::Tensor MpiCommunicator::reduce_scatter(const torch::Tensor& t, ReduceOp op) {
  check_cpu_contiguous(t, "reduce_scatter");
  if (t.dim() == 0 || t.size(0) % size_ != 0) {
    throw std::invalid_argument("reduce_scatter: dim 0 (" +
                                std::to_string(t.dim() ? t.size(0) : 0) + ") must divide into " +
                                std::to_string(size_) + " equal slices");
  }
  auto sizes = t.sizes().vec();
  sizes[0] /= size_;
  auto out = torch::empty(sizes, t.options());
  MOXIE_MPI_CHECK(MPI_Reduce_scatter_block(t.data_ptr(), out.data_ptr(),
                                           as_int(out.numel(), "reduce_scatter"), reduce_type(t),
                                           mpi_op(op), comm_));
  if (op == ReduceOp::kAvg) out.div_(size_);
  return out;
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  check_cpu_contiguous(t, "broadcast");
  ContiguousType element(t.element_size());
  MOXIE_MPI_CHECK(
      MPI_Bcast(t.data_ptr(), as_int(t.numel(), "broadcast"), element.get(), root, comm_));
}

void MpiCommunicator::barrier() { MOXIE_MPI_CHECK(MPI_Barrier(comm_)); }

namespace {
// MPI_Alltoallv's arguments for rows of `row_bytes`: counts in bytes when they
// fit MPI's int (Open MPI moves plain bytes fastest), else in rows of a
// derived contiguous type. A nonblocking exchange keeps this alive until it
// completes, as MPI requires of the count arrays.
struct AllToAllPlan {
  std::vector<int> send_counts, recv_counts, send_displs, recv_displs;
  std::unique_ptr<ContiguousType> row;  // set when counting in rows
  MPI_Datatype type() const { return row ? row->get() : MPI_BYTE; }
};

AllToAllPlan plan_all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                             const std::vector<int64_t>& recv_rows, int size,
                             std::vector<int64_t>* out_sizes) {
  check_cpu_contiguous(input, "all_to_all");
  if (static_cast<int>(send_rows.size()) != size || static_cast<int>(recv_rows.size()) != size) {
    throw std::invalid_argument("all_to_all: need one send and one receive count per rank (" +
                                std::to_string(size) + ")");
  }
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < size; ++p) {
    send_total += send_rows[p];
    recv_total += recv_rows[p];
  }
  if (send_total != (input.dim() ? input.size(0) : 0)) {
    throw std::invalid_argument("all_to_all: send counts sum to " + std::to_string(send_total) +
                                " but the input has " + std::to_string(input.size(0)) + " rows");
  }
  *out_sizes = input.sizes().vec();
  (*out_sizes)[0] = recv_total;
  int64_t row_bytes = input.element_size();
  for (size_t d = 1; d < out_sizes->size(); ++d) row_bytes *= (*out_sizes)[d];
  AllToAllPlan plan;
  const bool as_bytes = std::max(send_total, recv_total) * row_bytes <= INT_MAX;
  if (!as_bytes) plan.row = std::make_unique<ContiguousType>(std::max<int64_t>(1, row_bytes));
  const int64_t unit = as_bytes ? row_bytes : 1;
  plan.send_counts.resize(size);
  plan.recv_counts.resize(size);
  plan.send_displs.resize(size);
  plan.recv_displs.resize(size);
  int64_t s_off = 0, r_off = 0;
  for (int p = 0; p < size; ++p) {
    plan.send_counts[p] = as_int(send_rows[p] * unit, "all_to_all");
    plan.recv_counts[p] = as_int(recv_rows[p] * unit, "all_to_all");
    plan.send_displs[p] = as_int(s_off, "all_to_all");
    plan.recv_displs[p] = as_int(r_off, "all_to_all");
    s_off += send_rows[p] * unit;
    r_off += recv_rows[p] * unit;
  }
  return plan;
}

// MPI_Ialltoallv in flight: its tensors and count arrays live until it completes.
class MpiAllToAllOp : public PendingOp {
 public:
  MpiAllToAllOp(torch::Tensor input, torch::Tensor out, AllToAllPlan plan)
      : input_(std::move(input)), out_(std::move(out)), plan_(std::move(plan)) {}
  ~MpiAllToAllOp() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void wait() override {
    if (request_ != MPI_REQUEST_NULL) MOXIE_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
  }
  void start(MPI_Comm comm) {
    MOXIE_MPI_CHECK(MPI_Ialltoallv(input_.data_ptr(), plan_.send_counts.data(),
                                   plan_.send_displs.data(), plan_.type(), out_.data_ptr(),
                                   plan_.recv_counts.data(), plan_.recv_displs.data(), plan_.type(),
                                   comm, &request_));
  }

 private:
  torch::Tensor input_, out_;
  AllToAllPlan plan_;
  MPI_Request request_ = MPI_REQUEST_NULL;
};
}  // namespace

torch::Tensor MpiCommunicator::all_to_all(const torch::Tensor& input,
                                          const std::vector<int64_t>& send_rows,
                                          const std::vector<int64_t>& recv_rows) {
  std::vector<int64_t> sizes;
  const auto plan = plan_all_to_all(input, send_rows, recv_rows, size_, &sizes);
  auto out = torch::empty(sizes, input.options());
  MOXIE_MPI_CHECK(MPI_Alltoallv(input.data_ptr(), plan.send_counts.data(), plan.send_displs.data(),
                                plan.type(), out.data_ptr(), plan.recv_counts.data(),
                                plan.recv_displs.data(), plan.type(), comm_));
  return out;
}

std::unique_ptr<PendingOp> MpiCommunicator::all_to_all_async(const torch::Tensor& input,
                                                             const std::vector<int64_t>& send_rows,
                                                             const std::vector<int64_t>& recv_rows,
                                                             const torch::Tensor& out,
                                                             SelfRows self) {
  std::vector<int64_t> sizes;
  auto plan = plan_all_to_all(input, send_rows, recv_rows, size_, &sizes);
  if (self == SelfRows::kInPlace) plan.send_counts[rank_] = plan.recv_counts[rank_] = 0;
  check_cpu_contiguous(out, "all_to_all_async");
  if (out.sizes().vec() != sizes || out.scalar_type() != input.scalar_type()) {
    throw std::invalid_argument(
        "all_to_all_async: out must be " + std::string(c10::toString(input.scalar_type())) +
        " of shape " + c10::str(c10::IntArrayRef(sizes)) + ", not " +
        c10::toString(out.scalar_type()) + " of shape " + c10::str(out.sizes()));
  }
  auto op = std::make_unique<MpiAllToAllOp>(input, out, std::move(plan));
  op->start(comm_);
  return op;
}

}  // namespace moxie
