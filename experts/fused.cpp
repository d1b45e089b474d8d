// Fused MoE ops: autograd functions over experts/cuda's launchers, with the
// kernels' host form for CPU tensors.
#include "experts/fused.h"

#include "core/common/host.h"
#include "experts/cuda/moe_rows.cuh"

#ifdef MOXIE_HAVE_CUDA
#include "experts/cuda/moe_kernels.h"
#endif

namespace moxie {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using namespace kernels;

const float* ptr_or_null(const torch::Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

RouterRowOptions router_options(int64_t E, int64_t K, bool sigmoid, bool renormalize) {
  RouterRowOptions o;
  o.E = E;
  o.K = static_cast<int>(K);
  o.sigmoid = sigmoid;
  o.renormalize = renormalize;
  return o;
}

struct RouteFn : public torch::autograd::Function<RouteFn> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor logits, torch::Tensor bias,
                               int64_t K, bool sigmoid, bool renormalize) {
    auto l = logits.contiguous();
    const int64_t T = l.size(0), E = l.size(1);
    const auto o = router_options(E, K, sigmoid, renormalize);
    // No bias travels as an empty tensor (autograd's apply rejects undefined inputs).
    auto b = bias.numel() > 0 ? bias.to(l.device(), torch::kFloat).contiguous() : torch::Tensor();
    auto f = l.options();
    auto probs = torch::empty({T, E}, f), weight = torch::empty({T, K}, f),
         lse = torch::empty({T}, f);
    auto idx = torch::empty({T, K}, f.dtype(torch::kLong));
    if (l.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
      c10::cuda::CUDAGuard guard(l.device());
      launch_router_forward(l.data_ptr<float>(), ptr_or_null(b), o, T, probs.data_ptr<float>(),
                            weight.data_ptr<float>(), idx.data_ptr<int64_t>(),
                            lse.data_ptr<float>(), current_stream());
#endif
    } else {
      for (int64_t t = 0; t < T; ++t) {
        router_forward_row(HostLanes{}, l.data_ptr<float>() + t * E, ptr_or_null(b), o,
                           probs.data_ptr<float>() + t * E, weight.data_ptr<float>() + t * K,
                           idx.data_ptr<int64_t>() + t * K, lse.data_ptr<float>() + t);
      }
    }
    ctx->save_for_backward({l, idx});
    ctx->saved_data["K"] = K;
    ctx->saved_data["sigmoid"] = sigmoid;
    ctx->saved_data["renormalize"] = renormalize;
    ctx->mark_non_differentiable({idx});
    return {weight, probs, lse, idx};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& l = saved[0];
    const auto& idx = saved[1];
    const int64_t T = l.size(0), E = l.size(1);
    const auto o =
        router_options(E, ctx->saved_data["K"].toInt(), ctx->saved_data["sigmoid"].toBool(),
                       ctx->saved_data["renormalize"].toBool());
    auto contiguous = [](const torch::Tensor& g) {
      return g.defined() ? g.to(torch::kFloat).contiguous() : g;
    };
    auto gw = contiguous(grads[0]), gp = contiguous(grads[1]), gl = contiguous(grads[2]);
    auto dl = torch::empty_like(l);
    if (l.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
      c10::cuda::CUDAGuard guard(l.device());
      launch_router_backward(l.data_ptr<float>(), idx.data_ptr<int64_t>(), ptr_or_null(gw),
                             ptr_or_null(gp), ptr_or_null(gl), o, T, dl.data_ptr<float>(),
                             current_stream());
#endif
    } else {
      const float* gwp = ptr_or_null(gw);
      const float* gpp = ptr_or_null(gp);
      const float* glp = ptr_or_null(gl);
      for (int64_t t = 0; t < T; ++t) {
        router_backward_row(HostLanes{}, l.data_ptr<float>() + t * E,
                            idx.data_ptr<int64_t>() + t * o.K, gwp ? gwp + t * o.K : nullptr,
                            gpp ? gpp + t * E : nullptr, glp ? glp[t] : 0.f, o,
                            dl.data_ptr<float>() + t * E);
      }
    }
    return {dl, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// out[t] = sum_k w[pos[t, k]] * rows[pos[t, k]] (w undefined: 1).
torch::Tensor gather_sum(const torch::Tensor& rows_ND, const torch::Tensor& pos_TK,
                         const torch::Tensor& w_N) {
  const int64_t T = pos_TK.size(0), K = pos_TK.size(1), D = rows_ND.size(1);
  auto out = torch::empty({T, D}, rows_ND.options());
  if (rows_ND.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
    c10::cuda::CUDAGuard guard(rows_ND.device());
    launch_gather_sum(dtype_of(rows_ND), rows_ND.data_ptr(), pos_TK.data_ptr<int64_t>(),
                      ptr_or_null(w_N), out.data_ptr(), T, static_cast<int>(K), D,
                      current_stream());
#endif
    return out;
  }
  host_by_dtype(rows_ND, [&](auto* tag) {
    using T_ = std::remove_pointer_t<decltype(tag)>;
    for (int64_t t = 0; t < T; ++t) {
      gather_sum_row(HostLanes{}, static_cast<const T_*>(rows_ND.data_ptr()), D,
                     pos_TK.data_ptr<int64_t>() + t * K, static_cast<int>(K), ptr_or_null(w_N),
                     static_cast<T_*>(out.data_ptr()) + t * D);
    }
  });
  return out;
}

// out[n] = w[n] * in[src[n]]; with dot_with, also dot[n] = <in[src[n]], dot_with[n]>.
torch::Tensor scale_rows(const torch::Tensor& in_TD, const torch::Tensor& src_N,
                         const torch::Tensor& w_N, const torch::Tensor& dot_with_ND,
                         torch::Tensor* dot_N) {
  const int64_t N = src_N.size(0), D = in_TD.size(1);
  auto out = torch::empty({N, D}, in_TD.options());
  if (dot_N) *dot_N = torch::empty({N}, in_TD.options().dtype(torch::kFloat));
  float* dot = dot_N ? dot_N->data_ptr<float>() : nullptr;
  const void* with = dot_with_ND.defined() ? dot_with_ND.data_ptr() : nullptr;
  if (in_TD.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
    c10::cuda::CUDAGuard guard(in_TD.device());
    launch_scale_rows(dtype_of(in_TD), in_TD.data_ptr(), src_N.data_ptr<int64_t>(),
                      ptr_or_null(w_N), out.data_ptr(), with, dot, N, D, current_stream());
#endif
    return out;
  }
  host_by_dtype(in_TD, [&](auto* tag) {
    using T_ = std::remove_pointer_t<decltype(tag)>;
    const T_* inp = static_cast<const T_*>(in_TD.data_ptr());
    const float* wp = ptr_or_null(w_N);
    const int64_t* src = src_N.data_ptr<int64_t>();
    for (int64_t n = 0; n < N; ++n) {
      scale_row(HostLanes{}, inp + src[n] * D, D, wp ? wp[n] : 1.f,
                static_cast<T_*>(out.data_ptr()) + n * D,
                with ? static_cast<const T_*>(with) + n * D : nullptr, dot ? dot + n : nullptr);
    }
  });
  return out;
}

struct PermuteFn : public torch::autograd::Function<PermuteFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor src,
                               torch::Tensor pos) {
    ctx->save_for_backward({src, pos});
    return scale_rows(x.contiguous(), src, {}, {}, nullptr);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {gather_sum(grads[0].contiguous(), saved[1], {}), torch::Tensor(), torch::Tensor()};
  }
};

struct UnpermuteFn : public torch::autograd::Function<UnpermuteFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor y, torch::Tensor w,
                               torch::Tensor src, torch::Tensor pos) {
    auto yc = y.contiguous();
    auto wc = w.to(torch::kFloat).contiguous();
    ctx->save_for_backward({yc, wc, src, pos});
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
    return gather_sum(yc, pos, wc);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor dw;
    auto dy = scale_rows(grads[0].to(saved[0].scalar_type()).contiguous(), saved[2], saved[1],
                         saved[0], &dw);
    const auto w_dtype = static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    return {dy, dw.to(w_dtype), torch::Tensor(), torch::Tensor()};
  }
};

// a = silu(g) * u over N rows of H, g and u rows `stride` apart.
torch::Tensor swiglu_rows(const torch::Tensor& base_g, const torch::Tensor& base_u, int64_t g_off,
                          int64_t u_off, int64_t stride, int64_t N, int64_t H) {
  auto a = torch::empty({N, H}, base_g.options());
  auto* g = static_cast<const char*>(base_g.data_ptr()) + g_off * base_g.element_size();
  auto* u = static_cast<const char*>(base_u.data_ptr()) + u_off * base_u.element_size();
  if (base_g.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
    c10::cuda::CUDAGuard guard(base_g.device());
    launch_swiglu_forward(dtype_of(base_g), g, u, stride, a.data_ptr(), N, H, current_stream());
#endif
    return a;
  }
  host_by_dtype(base_g, [&](auto* tag) {
    using T_ = std::remove_pointer_t<decltype(tag)>;
    const T_* gp = reinterpret_cast<const T_*>(g);
    const T_* up = reinterpret_cast<const T_*>(u);
    T_* ap = static_cast<T_*>(a.data_ptr());
    for (int64_t r = 0; r < N; ++r)
      for (int64_t c = 0; c < H; ++c)
        ap[r * H + c] = Num<T_>::store(
            swiglu_forward(Num<T_>::load(gp[r * stride + c]), Num<T_>::load(up[r * stride + c])));
  });
  return a;
}

void swiglu_rows_backward(const torch::Tensor& base_g, const torch::Tensor& base_u, int64_t g_off,
                          int64_t u_off, int64_t stride, const torch::Tensor& da,
                          torch::Tensor& base_dg, torch::Tensor& base_du, int64_t N, int64_t H) {
  const auto es = base_g.element_size();
  auto* g = static_cast<const char*>(base_g.data_ptr()) + g_off * es;
  auto* u = static_cast<const char*>(base_u.data_ptr()) + u_off * es;
  auto* dg = static_cast<char*>(base_dg.data_ptr()) + g_off * es;
  auto* du = static_cast<char*>(base_du.data_ptr()) + u_off * es;
  if (base_g.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
    c10::cuda::CUDAGuard guard(base_g.device());
    launch_swiglu_backward(dtype_of(base_g), g, u, stride, da.data_ptr(), dg, du, N, H,
                           current_stream());
#endif
    return;
  }
  host_by_dtype(base_g, [&](auto* tag) {
    using T_ = std::remove_pointer_t<decltype(tag)>;
    const T_* gp = reinterpret_cast<const T_*>(g);
    const T_* up = reinterpret_cast<const T_*>(u);
    const T_* dap = static_cast<const T_*>(da.data_ptr());
    T_* dgp = reinterpret_cast<T_*>(dg);
    T_* dup = reinterpret_cast<T_*>(du);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t c = 0; c < H; ++c) {
        float dgv, duv;
        swiglu_backward(Num<T_>::load(gp[r * stride + c]), Num<T_>::load(up[r * stride + c]),
                        Num<T_>::load(dap[r * H + c]), dgv, duv);
        dgp[r * stride + c] = Num<T_>::store(dgv);
        dup[r * stride + c] = Num<T_>::store(duv);
      }
  });
}

struct SwiGLUPackedFn : public torch::autograd::Function<SwiGLUPackedFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor h) {
    auto hc = h.contiguous();
    const int64_t N = hc.size(0), H = hc.size(1) / 2;
    ctx->save_for_backward({hc});
    return swiglu_rows(hc, hc, 0, H, 2 * H, N, H);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto h = ctx->get_saved_variables()[0];
    const int64_t N = h.size(0), H = h.size(1) / 2;
    auto dh = torch::empty_like(h);
    swiglu_rows_backward(h, h, 0, H, 2 * H, grads[0].to(h.scalar_type()).contiguous(), dh, dh, N,
                         H);
    return {dh};
  }
};

struct SwiGLUFn : public torch::autograd::Function<SwiGLUFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor gate, torch::Tensor up) {
    const int64_t H = gate.size(-1);
    auto g = gate.contiguous().view({-1, H});
    auto u = up.contiguous().view({-1, H});
    ctx->save_for_backward({g, u});
    return swiglu_rows(g, u, 0, 0, H, g.size(0), H).view(gate.sizes());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& g = saved[0];
    const auto& u = saved[1];
    const int64_t N = g.size(0), H = g.size(1);
    auto dg = torch::empty_like(g), du = torch::empty_like(u);
    swiglu_rows_backward(g, u, 0, 0, H, grads[0].to(g.scalar_type()).contiguous().view({N, H}), dg,
                         du, N, H);
    return {dg.view(grads[0].sizes()), du.view(grads[0].sizes())};
  }
};

void check_rows(const torch::Tensor& t, const char* what) {
  TORCH_CHECK(t.dim() == 2, what, ": expected [rows, D], got ", t.sizes());
  dtype_of(t);
}

}  // namespace

FusedRouting fused_route(const torch::Tensor& logits_TE, const torch::Tensor& bias_E, int64_t K,
                         bool sigmoid, bool renormalize) {
  TORCH_CHECK(logits_TE.dim() == 2 && logits_TE.scalar_type() == torch::kFloat,
              "fused_route: logits must be float32 [T, E], got ", logits_TE.scalar_type(), " ",
              logits_TE.sizes());
  static_assert(kFusedRouteMaxTopK == kMaxTopK, "one top-k limit for the kernel and its callers");
  TORCH_CHECK(K >= 1 && K <= kMaxTopK && K <= logits_TE.size(1), "fused_route: top_k=", K,
              " must be between 1 and min(", kMaxTopK, ", the number of experts)");
  auto out =
      RouteFn::apply(logits_TE, bias_E.defined() ? bias_E : torch::empty({0}, logits_TE.options()),
                     K, sigmoid, renormalize);
  return {out[0], out[3], out[1], out[2]};
}

torch::Tensor fused_permute(const torch::Tensor& x_TD, const torch::Tensor& src_N,
                            const torch::Tensor& pos_TK) {
  check_rows(x_TD, "fused_permute");
  return PermuteFn::apply(x_TD, src_N.to(torch::kLong).contiguous(),
                          pos_TK.to(torch::kLong).contiguous());
}

torch::Tensor fused_unpermute(const torch::Tensor& y_ND, const torch::Tensor& weight_N,
                              const torch::Tensor& src_N, const torch::Tensor& pos_TK) {
  check_rows(y_ND, "fused_unpermute");
  TORCH_CHECK(weight_N.dim() == 1 && weight_N.size(0) == y_ND.size(0),
              "fused_unpermute: ", weight_N.numel(), " weights for ", y_ND.size(0), " rows");
  return UnpermuteFn::apply(y_ND, weight_N, src_N.to(torch::kLong).contiguous(),
                            pos_TK.to(torch::kLong).contiguous());
}

torch::Tensor fused_swiglu_packed(const torch::Tensor& h_N2H) {
  check_rows(h_N2H, "fused_swiglu_packed");
  TORCH_CHECK(h_N2H.size(1) % 2 == 0, "fused_swiglu_packed: width ", h_N2H.size(1), " is not 2H");
  return SwiGLUPackedFn::apply(h_N2H);
}

torch::Tensor fused_swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  TORCH_CHECK(gate.sizes() == up.sizes() && gate.scalar_type() == up.scalar_type(),
              "fused_swiglu: gate ", gate.sizes(), " and up ", up.sizes(), " differ");
  dtype_of(gate);
  return SwiGLUFn::apply(gate, up);
}

bool fused_moe_applies(const torch::Tensor& t) { return use_fused(t) && kernel_dtype(t); }

}  // namespace moxie
