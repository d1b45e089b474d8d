// Differentiable collectives.
#include "parallel/differentiable.h"

namespace moxie {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The forward starts the exchange into `out` (or fresh memory) and hands the
// op back through `arriving`: its rows are filled once that is waited.
struct AllToAllFn : public torch::autograd::Function<AllToAllFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor input, Communicator* comm,
                               std::vector<int64_t> send_rows, std::vector<int64_t> recv_rows,
                               ReusableBuffer* out, std::shared_ptr<PendingOp>* arriving) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["send"] = c10::IValue(send_rows);
    ctx->saved_data["recv"] = c10::IValue(recv_rows);
    auto in = input.contiguous();
    auto sizes = in.sizes().vec();
    TORCH_CHECK(!sizes.empty(), "all_to_all: the input needs a row dimension");
    sizes[0] = 0;
    for (auto r : recv_rows) sizes[0] += r;
    auto result = out ? out->get(sizes, in.options()) : torch::empty(sizes, in.options());
    *arriving = comm->all_to_all_async(in, send_rows, recv_rows, result, SelfRows::kCopy);
    return result;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    auto grad = comm->all_to_all(grads[0].contiguous(), ctx->saved_data["recv"].toIntVector(),
                                 ctx->saved_data["send"].toIntVector());
    return {grad,           torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

// The communicator works on dim 0: move `dim` there and back.
torch::Tensor gather_dim(Communicator& comm, const torch::Tensor& x, int64_t dim) {
  if (dim == 0) return comm.all_gather(x.contiguous());
  return comm.all_gather(x.movedim(dim, 0).contiguous()).movedim(0, dim).contiguous();
}
torch::Tensor reduce_scatter_dim(Communicator& comm, const torch::Tensor& x, int64_t dim) {
  TORCH_CHECK(x.size(dim) % comm.size() == 0, "reduce_scatter_along: size ", x.size(dim),
              " of dim ", dim, " is not divisible by the group size ", comm.size());
  if (dim == 0) return comm.reduce_scatter(x.contiguous(), ReduceOp::kSum);
  return comm.reduce_scatter(x.movedim(dim, 0).contiguous(), ReduceOp::kSum)
      .movedim(0, dim)
      .contiguous();
}

struct AllGatherFn : public torch::autograd::Function<AllGatherFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor input, Communicator* comm,
                               int64_t dim) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["dim"] = dim;
    return gather_dim(*comm, input, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    return {reduce_scatter_dim(*comm, grads[0], ctx->saved_data["dim"].toInt()), torch::Tensor(),
            torch::Tensor()};
  }
};

struct ReduceScatterFn : public torch::autograd::Function<ReduceScatterFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor input, Communicator* comm,
                               int64_t dim) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["dim"] = dim;
    return reduce_scatter_dim(*comm, input, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    return {gather_dim(*comm, grads[0], ctx->saved_data["dim"].toInt()), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_gather_along(Communicator& comm, const torch::Tensor& input, int64_t dim) {
  return AllGatherFn::apply(input, &comm, dim < 0 ? dim + input.dim() : dim);
}

torch::Tensor reduce_scatter_along(Communicator& comm, const torch::Tensor& input, int64_t dim) {
  return ReduceScatterFn::apply(input, &comm, dim < 0 ? dim + input.dim() : dim);
}

torch::Tensor differentiable_all_to_all_async(Communicator& comm, const torch::Tensor& input,
                                              const std::vector<int64_t>& send_rows,
                                              const std::vector<int64_t>& recv_rows,
                                              ReusableBuffer* out,
                                              std::shared_ptr<PendingOp>* arriving) {
  return AllToAllFn::apply(input, &comm, send_rows, recv_rows, out, arriving);
}

torch::Tensor differentiable_all_to_all(Communicator& comm, const torch::Tensor& input,
                                        const std::vector<int64_t>& send_rows,
                                        const std::vector<int64_t>& recv_rows,
                                        ReusableBuffer* out) {
  std::shared_ptr<PendingOp> arriving;
  auto result = AllToAllFn::apply(input, &comm, send_rows, recv_rows, out, &arriving);
  arriving->wait();
  return result;
}

torch::Tensor ReusableBuffer::get(c10::IntArrayRef sizes, const torch::TensorOptions& options) {
  const int64_t n = c10::multiply_integers(sizes);
  const bool fits = storage_.defined() && storage_.storage().use_count() == 1 &&
                    storage_.numel() >= n && storage_.dtype() == options.dtype() &&
                    storage_.device() == options.device();
  if (!fits) {
    // Slack of an eighth: routing moves row counts a little from step to step.
    storage_ = torch::Tensor();  // freed first if nothing else holds it
    storage_ = torch::empty({n + n / 8}, options);
  }
  return storage_.narrow(0, 0, n).view(sizes);
}

}  // namespace moxie
