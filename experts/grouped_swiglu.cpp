// Grouped SwiGLU: forward and hand-written backward over expert segments.
#include "experts/grouped_swiglu.h"

namespace moxie {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// a = silu(gate) * up, from the [N, 2H] pre-activations.
torch::Tensor swiglu_activation(const torch::Tensor& h13_NF) {
  auto halves = h13_NF.chunk(2, 1);
  return torch::silu(halves[0]) * halves[1];
}

struct GroupedSwiGLUFn : public torch::autograd::Function<GroupedSwiGLUFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x_ND, torch::Tensor w13_EFD,
                               torch::Tensor w2_EDH, std::vector<int64_t> counts) {
    x_ND = x_ND.contiguous();
    const int64_t N = x_ND.size(0);
    const int64_t F = w13_EFD.size(1);
    const int64_t D = w2_EDH.size(1);
    auto h13_NF = torch::empty({N, F}, x_ND.options());
    int64_t offset = 0;
    for (size_t e = 0; e < counts.size(); ++e) {
      if (counts[e] == 0) continue;
      auto rows = h13_NF.narrow(0, offset, counts[e]);
      torch::mm_out(rows, x_ND.narrow(0, offset, counts[e]), w13_EFD[e].t());
      offset += counts[e];
    }
    auto a_NH = swiglu_activation(h13_NF);
    auto y_ND = torch::empty({N, D}, x_ND.options());
    offset = 0;
    for (size_t e = 0; e < counts.size(); ++e) {
      if (counts[e] == 0) continue;
      auto rows = y_ND.narrow(0, offset, counts[e]);
      torch::mm_out(rows, a_NH.narrow(0, offset, counts[e]), w2_EDH[e].t());
      offset += counts[e];
    }
    ctx->save_for_backward({x_ND, w13_EFD, w2_EDH, h13_NF});
    ctx->saved_data["counts"] = c10::IValue(counts);
    return y_ND;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto& x_ND = saved[0];
    const auto& w13_EFD = saved[1];
    const auto& w2_EDH = saved[2];
    const auto& h13_NF = saved[3];
    const auto counts = ctx->saved_data["counts"].toIntVector();
    auto g_ND = grad_outputs[0].contiguous();
    const int64_t N = x_ND.size(0);
    const int64_t H = w2_EDH.size(2);

    auto halves = h13_NF.chunk(2, 1);
    const auto& gate = halves[0];
    const auto& up = halves[1];
    auto sig = torch::sigmoid(gate);
    auto silu = gate * sig;
    auto a_NH = silu * up;

    auto grad_w2 = torch::zeros_like(w2_EDH);
    auto da_NH = torch::empty({N, H}, x_ND.options());
    int64_t offset = 0;
    for (size_t e = 0; e < counts.size(); ++e) {
      if (counts[e] == 0) continue;
      auto g = g_ND.narrow(0, offset, counts[e]);
      auto out_w2 = grad_w2[e];
      torch::mm_out(out_w2, g.t(), a_NH.narrow(0, offset, counts[e]));
      auto out_da = da_NH.narrow(0, offset, counts[e]);
      torch::mm_out(out_da, g, w2_EDH[e]);
      offset += counts[e];
    }
    // d silu(g)/dg = s * (1 + g * (1 - s))
    auto dgate = da_NH * up * sig * (1 + gate * (1 - sig));
    auto dup = da_NH * silu;
    auto dh13_NF = torch::cat({dgate, dup}, 1);

    auto grad_w13 = torch::zeros_like(w13_EFD);
    auto grad_x = torch::empty_like(x_ND);
    offset = 0;
    for (size_t e = 0; e < counts.size(); ++e) {
      if (counts[e] == 0) continue;
      auto dh = dh13_NF.narrow(0, offset, counts[e]);
      auto out_w13 = grad_w13[e];
      torch::mm_out(out_w13, dh.t(), x_ND.narrow(0, offset, counts[e]));
      auto out_x = grad_x.narrow(0, offset, counts[e]);
      torch::mm_out(out_x, dh, w13_EFD[e]);
      offset += counts[e];
    }
    return {grad_x, grad_w13, grad_w2, torch::Tensor()};
  }
};

void check_segments(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                    const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts) {
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == w13_EFD.size(0),
              "grouped_swiglu: ", counts.size(), " segment counts for ", w13_EFD.size(0),
              " experts");
  int64_t total = 0;
  for (auto c : counts) total += c;
  TORCH_CHECK(total == x_ND.size(0), "grouped_swiglu: segment counts sum to ", total, " but x has ",
              x_ND.size(0), " rows");
  TORCH_CHECK(w13_EFD.size(1) == 2 * w2_EDH.size(2) && w13_EFD.size(2) == x_ND.size(1) &&
                  w2_EDH.size(1) == x_ND.size(1),
              "grouped_swiglu: weight shapes ", w13_EFD.sizes(), " and ", w2_EDH.sizes(),
              " do not fit x ", x_ND.sizes());
}

}  // namespace

torch::Tensor grouped_swiglu(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                             const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts) {
  check_segments(x_ND, w13_EFD, w2_EDH, counts);
  return GroupedSwiGLUFn::apply(x_ND, w13_EFD, w2_EDH, counts);
}

torch::Tensor grouped_swiglu_reference(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                       const torch::Tensor& w2_EDH,
                                       const std::vector<int64_t>& counts) {
  check_segments(x_ND, w13_EFD, w2_EDH, counts);
  const int64_t H = w2_EDH.size(2);
  std::vector<torch::Tensor> rows;
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    for (int64_t i = 0; i < counts[e]; ++i, ++row) {
      auto x = x_ND[row];
      auto gate = torch::mv(w13_EFD[e].narrow(0, 0, H), x);
      auto up = torch::mv(w13_EFD[e].narrow(0, H, H), x);
      rows.push_back(torch::mv(w2_EDH[e], gate * torch::sigmoid(gate) * up));
    }
  }
  if (rows.empty()) return torch::zeros({0, x_ND.size(1)}, x_ND.options());
  return torch::stack(rows);
}

}  // namespace moxie
