// Fused RMSNorm and cross-entropy: autograd functions over core/cuda's
// launchers, with the kernels' host form for CPU tensors.
#include "core/model/fused.h"

#include "core/common/host.h"
#include "core/model/cuda/core_rows.cuh"

#ifdef MOXIE_HAVE_CUDA
#include "core/model/cuda/core_kernels.h"
#endif

namespace moxie {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using namespace kernels;

struct RMSNormFn : public torch::autograd::Function<RMSNormFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight,
                               double eps) {
    const int64_t D = x.size(-1);
    auto x_ND = x.contiguous().view({-1, D});
    auto w = weight.contiguous();
    const int64_t N = x_ND.size(0);
    auto y = torch::empty_like(x_ND);
    auto rstd = torch::empty({N}, x.options().dtype(torch::kFloat));
    if (x.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
      c10::cuda::CUDAGuard guard(x.device());
      launch_rmsnorm_forward(dtype_of(x), x_ND.data_ptr(), w.data_ptr(), y.data_ptr(),
                             rstd.data_ptr<float>(), N, D, static_cast<float>(eps),
                             current_stream());
#endif
    } else {
      host_by_dtype(x, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        const T* xp = static_cast<const T*>(x_ND.data_ptr());
        T* yp = static_cast<T*>(y.data_ptr());
        for (int64_t r = 0; r < N; ++r) {
          rmsnorm_forward_row(HostLanes{}, xp + r * D, static_cast<const T*>(w.data_ptr()),
                              yp + r * D, rstd.data_ptr<float>() + r, D, static_cast<float>(eps));
        }
      });
    }
    ctx->save_for_backward({x_ND, w, rstd});
    return y.view(x.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x_ND = saved[0];
    const auto& w = saved[1];
    const auto& rstd = saved[2];
    const int64_t N = x_ND.size(0), D = x_ND.size(1);
    auto dy = grads[0].to(x_ND.scalar_type()).contiguous().view({N, D});
    auto dx = torch::empty_like(x_ND);
    torch::Tensor dw;
    if (x_ND.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
      c10::cuda::CUDAGuard guard(x_ND.device());
      auto partial = torch::empty({rmsnorm_dw_groups(N), D}, x_ND.options().dtype(torch::kFloat));
      launch_rmsnorm_backward(dtype_of(x_ND), dy.data_ptr(), x_ND.data_ptr(), w.data_ptr(),
                              rstd.data_ptr<float>(), dx.data_ptr(), partial.data_ptr<float>(), N,
                              D, current_stream());
      dw = partial.sum(0).to(w.scalar_type());
#endif
    } else {
      auto dw_f = torch::empty({D}, torch::kFloat);
      host_by_dtype(x_ND, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        const T* dyp = static_cast<const T*>(dy.data_ptr());
        const T* xp = static_cast<const T*>(x_ND.data_ptr());
        const T* wp = static_cast<const T*>(w.data_ptr());
        T* dxp = static_cast<T*>(dx.data_ptr());
        const float* rp = rstd.data_ptr<float>();
        for (int64_t r = 0; r < N; ++r)
          rmsnorm_backward_row(HostLanes{}, dyp + r * D, xp + r * D, wp, rp[r], dxp + r * D, D);
        for (int64_t c = 0; c < D; ++c)
          dw_f.data_ptr<float>()[c] = rmsnorm_dw_column(dyp, xp, rp, c, 0, N, D);
      });
      dw = dw_f.to(w.scalar_type());
    }
    return {dx.view(grads[0].sizes()), dw, torch::Tensor()};
  }
};

struct CrossEntropyFn : public torch::autograd::Function<CrossEntropyFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor logits, torch::Tensor targets) {
    auto l = logits.contiguous();
    auto t = targets.to(torch::kLong).contiguous();
    const int64_t N = l.size(0), V = l.size(1);
    auto loss = torch::empty({N}, l.options().dtype(torch::kFloat));
    auto lse = torch::empty({N}, l.options().dtype(torch::kFloat));
    if (l.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
      c10::cuda::CUDAGuard guard(l.device());
      launch_cross_entropy_forward(dtype_of(l), l.data_ptr(), t.data_ptr<int64_t>(),
                                   loss.data_ptr<float>(), lse.data_ptr<float>(), N, V,
                                   current_stream());
#endif
    } else {
      host_by_dtype(l, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        const T* lp = static_cast<const T*>(l.data_ptr());
        for (int64_t r = 0; r < N; ++r) {
          loss.data_ptr<float>()[r] = cross_entropy_forward_row(
              HostLanes{}, lp + r * V, V, t.data_ptr<int64_t>()[r], lse.data_ptr<float>() + r);
        }
      });
    }
    ctx->save_for_backward({l, t, lse});
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& l = saved[0];
    const auto& t = saved[1];
    const auto& lse = saved[2];
    const int64_t N = l.size(0), V = l.size(1);
    auto g = grads[0].to(torch::kFloat).contiguous();
    auto dl = torch::empty_like(l);
    if (l.is_cuda()) {
#ifdef MOXIE_HAVE_CUDA
      c10::cuda::CUDAGuard guard(l.device());
      launch_cross_entropy_backward(dtype_of(l), l.data_ptr(), t.data_ptr<int64_t>(),
                                    lse.data_ptr<float>(), g.data_ptr<float>(), dl.data_ptr(), N, V,
                                    current_stream());
#endif
    } else {
      host_by_dtype(l, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        const T* lp = static_cast<const T*>(l.data_ptr());
        T* dp = static_cast<T*>(dl.data_ptr());
        for (int64_t r = 0; r < N; ++r) {
          cross_entropy_backward_row(HostLanes{}, lp + r * V, V, t.data_ptr<int64_t>()[r],
                                     lse.data_ptr<float>()[r], g.data_ptr<float>()[r], dp + r * V);
        }
      });
    }
    return {dl, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor fused_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), "fused_rms_norm: x is ", x.scalar_type(),
              " but weight is ", weight.scalar_type());
  TORCH_CHECK(weight.dim() == 1 && x.size(-1) == weight.size(0), "fused_rms_norm: weight ",
              weight.sizes(), " does not fit x ", x.sizes());
  dtype_of(x);
  return RMSNormFn::apply(x, weight, eps);
}

torch::Tensor fused_cross_entropy(const torch::Tensor& logits_NV, const torch::Tensor& targets_N) {
  TORCH_CHECK(
      logits_NV.dim() == 2 && targets_N.dim() == 1 && targets_N.size(0) == logits_NV.size(0),
      "fused_cross_entropy: logits ", logits_NV.sizes(), " and targets ", targets_N.sizes(),
      " are not [N, V] and [N]");
  dtype_of(logits_NV);
  return CrossEntropyFn::apply(logits_NV, targets_N);
}

bool fused_rms_norm_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  return use_fused(x) && kernel_dtype(x) && x.scalar_type() == weight.scalar_type() &&
         x.device() == weight.device();
}

bool fused_cross_entropy_applies(const torch::Tensor& logits) {
  return use_fused(logits) && kernel_dtype(logits);
}

}  // namespace moxie
