// Differentiable collectives.
#include "parallel/differentiable.h"

namespace moxie {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct AllToAllFn : public torch::autograd::Function<AllToAllFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor input, Communicator* comm,
                               std::vector<int64_t> send_rows, std::vector<int64_t> recv_rows) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["send"] = c10::IValue(send_rows);
    ctx->saved_data["recv"] = c10::IValue(recv_rows);
    return comm->all_to_all(input.contiguous(), send_rows, recv_rows);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    auto grad = comm->all_to_all(grads[0].contiguous(), ctx->saved_data["recv"].toIntVector(),
                                 ctx->saved_data["send"].toIntVector());
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor differentiable_all_to_all(Communicator& comm, const torch::Tensor& input,
                                        const std::vector<int64_t>& send_rows,
                                        const std::vector<int64_t>& recv_rows) {
  return AllToAllFn::apply(input, &comm, send_rows, recv_rows);
}

}  // namespace moxie
