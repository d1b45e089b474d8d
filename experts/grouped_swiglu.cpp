// Grouped SwiGLU: forward and hand-written backward over expert segments.
#include "experts/grouped_swiglu.h"

#include "experts/fused.h"

namespace moxie {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Row segments and the expert of each.
struct Segments {
  std::vector<int64_t> rows;
  std::vector<int64_t> expert;
};

// out = a @ b, or out += a @ b; on the CPU, bfloat16 in float32 and rounded
// once, for the reason moxie::linear_product gives (parallel/tensor_parallel.h).
void mm_into(torch::Tensor out, const torch::Tensor& a, const torch::Tensor& b,
             bool accumulate = false) {
  if (out.is_cpu() && out.scalar_type() == torch::kBFloat16) {
    auto product = torch::mm(a.to(torch::kFloat), b.to(torch::kFloat));
    if (accumulate) product += out.to(torch::kFloat);
    out.copy_(product);
  } else if (accumulate) {
    out.addmm_(a, b);
  } else {
    torch::mm_out(out, a, b);
  }
}

// Per-segment matmul: out[rows of segment i] = in[rows of segment i] @ w(expert of i).
template <class WeightOf>
void segment_mm(torch::Tensor& out, const torch::Tensor& in, const Segments& seg,
                WeightOf weight_of) {
  int64_t offset = 0;
  for (size_t i = 0; i < seg.rows.size(); ++i) {
    if (seg.rows[i] == 0) continue;
    auto rows = out.narrow(0, offset, seg.rows[i]);
    mm_into(rows, in.narrow(0, offset, seg.rows[i]), weight_of(seg.expert[i]));
    offset += seg.rows[i];
  }
}

// Weight gradients: grad[e] (or rows [row0, row0 + nrows) of it) = sum over
// e's segments of lhs[segment]^T @ rhs[segment]; zeros for an expert with none.
// The first segment of an expert writes, later ones accumulate.
void segment_weight_grad(torch::Tensor& grad, const torch::Tensor& lhs, const torch::Tensor& rhs,
                         const Segments& seg, int64_t row0, int64_t nrows) {
  std::vector<bool> written(grad.size(0), false);
  int64_t offset = 0;
  for (size_t i = 0; i < seg.rows.size(); ++i) {
    if (seg.rows[i] == 0) continue;
    const int64_t e = seg.expert[i];
    auto out = grad[e].narrow(0, row0, nrows);
    auto a = lhs.narrow(0, offset, seg.rows[i]).t();
    auto b = rhs.narrow(0, offset, seg.rows[i]);
    mm_into(out, a, b, /*accumulate=*/written[e]);
    written[e] = true;
    offset += seg.rows[i];
  }
  for (int64_t e = 0; e < grad.size(0); ++e) {
    if (!written[e]) grad[e].narrow(0, row0, nrows).zero_();
  }
}

// Gate and up pre-activations live in separate contiguous buffers: ATen's
// elementwise kernels run several times faster on contiguous rows than on
// column halves of one [N, 2H] buffer. Forward saves silu(gate) and the
// activation, so backward recomputes nothing.
struct GroupedSwiGLUFn : public torch::autograd::Function<GroupedSwiGLUFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x_ND, torch::Tensor w13_EFD,
                               torch::Tensor w2_EDH, std::vector<int64_t> counts,
                               std::vector<int64_t> experts) {
    const Segments seg{counts, experts};
    x_ND = x_ND.contiguous();
    const int64_t N = x_ND.size(0);
    const int64_t H = w2_EDH.size(2);
    const int64_t D = w2_EDH.size(1);
    auto gate_NH = torch::empty({N, H}, x_ND.options());
    auto up_NH = torch::empty({N, H}, x_ND.options());
    segment_mm(gate_NH, x_ND, seg, [&](int64_t e) { return w13_EFD[e].narrow(0, 0, H).t(); });
    segment_mm(up_NH, x_ND, seg, [&](int64_t e) { return w13_EFD[e].narrow(0, H, H).t(); });
    auto silu_NH = torch::silu(gate_NH);
    auto a_NH = silu_NH * up_NH;
    auto y_ND = torch::empty({N, D}, x_ND.options());
    segment_mm(y_ND, a_NH, seg, [&](int64_t e) { return w2_EDH[e].t(); });
    ctx->save_for_backward({x_ND, w13_EFD, w2_EDH, gate_NH, up_NH, silu_NH, a_NH});
    ctx->saved_data["counts"] = c10::IValue(counts);
    ctx->saved_data["experts"] = c10::IValue(experts);
    return y_ND;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto& x_ND = saved[0];
    const auto& w13_EFD = saved[1];
    const auto& w2_EDH = saved[2];
    const auto& gate_NH = saved[3];
    const auto& up_NH = saved[4];
    const auto& silu_NH = saved[5];
    const auto& a_NH = saved[6];
    const Segments seg{ctx->saved_data["counts"].toIntVector(),
                       ctx->saved_data["experts"].toIntVector()};
    auto g_ND = grad_outputs[0].contiguous();
    const int64_t D = w2_EDH.size(1);
    const int64_t H = w2_EDH.size(2);

    auto grad_w2 = torch::empty_like(w2_EDH);
    segment_weight_grad(grad_w2, g_ND, a_NH, seg, 0, D);
    auto da_NH = torch::empty_like(gate_NH);
    segment_mm(da_NH, g_ND, seg, [&](int64_t e) { return w2_EDH[e]; });

    // d/d gate = silu'(gate) * da * up;  d/d up = da * silu(gate)
    auto dgate_NH = at::silu_backward(da_NH * up_NH, gate_NH);
    auto dup_NH = da_NH.mul_(silu_NH);

    auto grad_w13 = torch::empty_like(w13_EFD);
    segment_weight_grad(grad_w13, dgate_NH, x_ND, seg, 0, H);
    segment_weight_grad(grad_w13, dup_NH, x_ND, seg, H, H);
    auto grad_x = torch::empty_like(x_ND);
    segment_mm(grad_x, dgate_NH, seg, [&](int64_t e) { return w13_EFD[e].narrow(0, 0, H); });
    int64_t offset = 0;
    for (size_t i = 0; i < seg.rows.size(); ++i) {
      if (seg.rows[i] == 0) continue;
      auto rows = grad_x.narrow(0, offset, seg.rows[i]);
      mm_into(rows, dup_NH.narrow(0, offset, seg.rows[i]), w13_EFD[seg.expert[i]].narrow(0, H, H),
              /*accumulate=*/true);
      offset += seg.rows[i];
    }
    return {grad_x, grad_w13, grad_w2, torch::Tensor(), torch::Tensor()};
  }
};

// The expert of every segment (identity when none are given), checked.
std::vector<int64_t> check_segments(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                    const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts,
                                    const std::vector<int64_t>& segment_experts) {
  std::vector<int64_t> experts = segment_experts;
  if (experts.empty()) {
    TORCH_CHECK(static_cast<int64_t>(counts.size()) == w13_EFD.size(0),
                "grouped_swiglu: ", counts.size(), " segment counts for ", w13_EFD.size(0),
                " experts");
    for (size_t i = 0; i < counts.size(); ++i) experts.push_back(static_cast<int64_t>(i));
  }
  TORCH_CHECK(experts.size() == counts.size(), "grouped_swiglu: ", counts.size(),
              " segment counts but ", experts.size(), " segment experts");
  for (auto e : experts) {
    TORCH_CHECK(e >= 0 && e < w13_EFD.size(0), "grouped_swiglu: segment expert ", e,
                " outside [0, ", w13_EFD.size(0), ")");
  }
  int64_t total = 0;
  for (auto c : counts) total += c;
  TORCH_CHECK(total == x_ND.size(0), "grouped_swiglu: segment counts sum to ", total, " but x has ",
              x_ND.size(0), " rows");
  TORCH_CHECK(w13_EFD.size(1) == 2 * w2_EDH.size(2) && w13_EFD.size(2) == x_ND.size(1) &&
                  w2_EDH.size(1) == x_ND.size(1),
              "grouped_swiglu: weight shapes ", w13_EFD.sizes(), " and ", w2_EDH.sizes(),
              " do not fit x ", x_ND.sizes());
  return experts;
}

}  // namespace

bool grouped_gemm_applies(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                          const torch::Tensor& w2_EDH) {
  return fused_moe_applies(x_ND) && x_ND.scalar_type() == torch::kBFloat16 &&
         w13_EFD.scalar_type() == torch::kBFloat16 && w2_EDH.scalar_type() == torch::kBFloat16 &&
         x_ND.size(1) % 8 == 0 && w2_EDH.size(2) % 8 == 0;
}

torch::Tensor grouped_swiglu_gemm(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                  const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts,
                                  const std::vector<int64_t>& segment_experts) {
  const auto experts = check_segments(x_ND, w13_EFD, w2_EDH, counts, segment_experts);
  const int64_t E = w13_EFD.size(0), H = w2_EDH.size(2), N = x_ND.size(0);
  // Each expert's group starts at a multiple of 8 rows: the weight gradient
  // contracts over rows, and the grouped kernel's 16-byte (TMA) alignment
  // then holds for every group's first row.
  constexpr int64_t kAlign = 8;
  std::vector<int64_t> per_expert(static_cast<size_t>(E), 0);
  bool as_is = true;  // one segment per expert, in expert order, aligned sizes
  for (size_t s = 0; s < experts.size(); ++s) {
    per_expert[static_cast<size_t>(experts[s])] += counts[s];
    as_is = as_is && experts[s] == static_cast<int64_t>(s) &&
            (counts[s] % kAlign == 0 || s + 1 == experts.size());
  }
  const auto on = x_ND.device();
  auto x = x_ND.contiguous();
  torch::Tensor back;  // rows of the grouped layout back into segment order
  std::vector<int32_t> ends(per_expert.size());
  if (as_is) {
    int64_t total = 0;
    for (size_t e = 0; e < per_expert.size(); ++e)
      ends[e] = static_cast<int32_t>(total += per_expert[e]);
  } else {
    // Grouped layout: expert by expert, each group padded to kAlign rows
    // with a zero row (index N of x with a zero row appended).
    std::vector<int64_t> start(counts.size(), 0);
    for (size_t s = 1; s < counts.size(); ++s) start[s] = start[s - 1] + counts[s - 1];
    std::vector<int64_t> order, where(static_cast<size_t>(N));
    order.reserve(static_cast<size_t>(N + E * kAlign));
    for (int64_t e = 0; e < E; ++e) {
      for (size_t s = 0; s < experts.size(); ++s) {
        if (experts[s] != e) continue;
        for (int64_t r = 0; r < counts[s]; ++r) {
          where[static_cast<size_t>(start[s] + r)] = static_cast<int64_t>(order.size());
          order.push_back(start[s] + r);
        }
      }
      while (order.size() % kAlign != 0) order.push_back(N);
      ends[static_cast<size_t>(e)] = static_cast<int32_t>(order.size());
    }
    TORCH_CHECK(static_cast<int64_t>(order.size()) < (int64_t{1} << 31),
                "grouped_swiglu_gemm: ", order.size(), " rows exceed int32 offsets");
    x = torch::cat({x, torch::zeros({1, x.size(1)}, x.options())})
            .index_select(0, torch::tensor(order).to(on));
    back = torch::tensor(where).to(on);
  }
  auto offs = torch::tensor(ends, torch::kInt).to(on);
  auto h_N2H = at::_grouped_mm(x, w13_EFD.transpose(1, 2), offs);
  auto a_NH = fused_moe_applies(h_N2H) ? fused_swiglu_packed(h_N2H)
                                       : torch::silu(h_N2H.narrow(1, 0, H)) * h_N2H.narrow(1, H, H);
  auto y_ND = at::_grouped_mm(a_NH, w2_EDH.transpose(1, 2), offs);
  return back.defined() ? y_ND.index_select(0, back) : y_ND;
}

torch::Tensor grouped_swiglu(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                             const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts,
                             const std::vector<int64_t>& segment_experts) {
  if (grouped_gemm_applies(x_ND, w13_EFD, w2_EDH)) {
    return grouped_swiglu_gemm(x_ND, w13_EFD, w2_EDH, counts, segment_experts);
  }
  return grouped_swiglu_loop(x_ND, w13_EFD, w2_EDH, counts, segment_experts);
}

torch::Tensor grouped_swiglu_loop(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                  const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts,
                                  const std::vector<int64_t>& segment_experts) {
  auto experts = check_segments(x_ND, w13_EFD, w2_EDH, counts, segment_experts);
  return GroupedSwiGLUFn::apply(x_ND, w13_EFD, w2_EDH, counts, experts);
}

torch::Tensor grouped_swiglu_reference(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                       const torch::Tensor& w2_EDH,
                                       const std::vector<int64_t>& counts,
                                       const std::vector<int64_t>& segment_experts) {
  const auto experts = check_segments(x_ND, w13_EFD, w2_EDH, counts, segment_experts);
  const int64_t H = w2_EDH.size(2);
  std::vector<torch::Tensor> rows;
  int64_t row = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    const int64_t e = experts[s];
    for (int64_t i = 0; i < counts[s]; ++i, ++row) {
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
