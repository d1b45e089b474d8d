// AdamW, schedules and clipping against naive scalar references.
#include <catch2/catch.hpp>
#include <cmath>

#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "tests/kernel_checks.h"

using namespace moxie;

namespace {

// torch.optim.AdamW's update for one scalar, in double.
struct ScalarAdamW {
  double p, m = 0, v = 0;
  int t = 0;
  void step(double g, double lr, double wd, const OptimOptions& o) {
    ++t;
    p -= lr * wd * p;
    m = o.beta1 * m + (1 - o.beta1) * g;
    v = o.beta2 * v + (1 - o.beta2) * g * g;
    const double mhat = m / (1 - std::pow(o.beta1, t));
    const double vhat = v / (1 - std::pow(o.beta2, t));
    p -= lr * mhat / (std::sqrt(vhat) + o.eps);
  }
};

std::vector<double> values(const torch::Tensor& t) {
  auto flat = t.detach().to(torch::kDouble).contiguous().view(-1);
  return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

std::vector<ScalarAdamW> references(const torch::Tensor& t) {
  std::vector<ScalarAdamW> r;
  for (double x : values(t)) r.push_back({x});
  return r;
}

void reference_step(std::vector<ScalarAdamW>& r, const torch::Tensor& grad, double lr, double wd,
                    const OptimOptions& o) {
  const auto g = values(grad);
  for (size_t i = 0; i < r.size(); ++i) r[i].step(g[i], lr, wd, o);
}

}  // namespace

TEST_CASE("AdamW follows the scalar formula across groups, steps and skipped params") {
  torch::manual_seed(16);
  OptimOptions o;
  o.beta1 = 0.8;
  o.beta2 = 0.9;
  auto a = torch::randn({3, 4}).requires_grad_(true);
  auto b = torch::randn({5}).requires_grad_(true);  // a grad on every other step only
  auto c = torch::randn({2}).requires_grad_(true);  // never gets a gradient
  auto d = torch::randn({7}, torch::kDouble).requires_grad_(true);
  const auto c0 = c.detach().clone();
  AdamW opt({{"decay", {a, d}, 0.1, 1.0}, {"no_decay", {b, c}, 0.0, 0.5}}, o);

  auto ra = references(a), rb = references(b), rd = references(d);
  const double lr = 0.01;
  for (int s = 0; s < 6; ++s) {
    // A transposed (non-contiguous) grad, as matmul backward produces.
    auto ga = torch::randn({4, 3}).t();
    auto gd = torch::randn({7}, torch::kDouble);
    a.mutable_grad() = ga;
    d.mutable_grad() = gd;
    reference_step(ra, ga, lr, 0.1, o);
    reference_step(rd, gd, lr, 0.1, o);
    if (s % 2 == 0) {
      auto gb = torch::randn({5});
      b.mutable_grad() = gb;
      reference_step(rb, gb, lr * 0.5, 0.0, o);
    }
    opt.step(lr);
    opt.zero_grad();
  }
  const auto va = values(a), vb = values(b), vd = values(d);
  for (size_t i = 0; i < va.size(); ++i) CHECK(va[i] == Approx(ra[i].p).epsilon(1e-6).margin(1e-7));
  for (size_t i = 0; i < vb.size(); ++i) CHECK(vb[i] == Approx(rb[i].p).epsilon(1e-6).margin(1e-7));
  // float64 parameters: the kernel is the formula, to double rounding.
  for (size_t i = 0; i < vd.size(); ++i) CHECK(vd[i] == Approx(rd[i].p).epsilon(1e-12));
  CHECK(torch::equal(c.detach(), c0));
  CHECK(opt.state(0, 0).step == 6);
  CHECK(opt.state(1, 0).step == 3);
  CHECK(opt.state(1, 1).step == 0);
  CHECK(opt.steps_taken() == 6);
  CHECK(opt.state(1, 0).exp_avg.scalar_type() == torch::kFloat);
  CHECK(!opt.state(0, 0).master.defined());
  CHECK(!a.grad().defined());
}

TEST_CASE("bf16 parameters keep an fp32 master so tiny updates add up") {
  OptimOptions o;
  auto p = torch::ones({4}, torch::kBFloat16).requires_grad_(true);
  AdamW opt({{"all", {p}, 0.0, 1.0}}, o);
  REQUIRE(opt.state(0, 0).master.defined());
  // With a constant grad the update is lr / (1 + eps) ~ lr = 1e-4, below half
  // of bf16's spacing under 1.0 (2^-8): a bf16-only update rounds back to 1.
  const double lr = 1e-4;
  auto bf16_only = torch::ones({4}, torch::kBFloat16);
  ScalarAdamW reference{1.0};
  for (int s = 0; s < 200; ++s) {
    p.mutable_grad() = torch::ones({4}, torch::kBFloat16);
    opt.step(lr);
    bf16_only = bf16_only - lr;  // computed and rounded in bf16
    reference.step(1.0, lr, 0.0, o);
  }
  const auto& state = opt.state(0, 0);
  CHECK(state.master.scalar_type() == torch::kFloat);
  CHECK(state.exp_avg.scalar_type() == torch::kFloat);
  CHECK(state.exp_avg_sq.scalar_type() == torch::kFloat);
  CHECK(bf16_only[0].item<double>() == 1.0);
  CHECK(state.master[0].item<double>() == Approx(reference.p).epsilon(1e-5));
  CHECK(reference.p == Approx(0.98).epsilon(1e-6));
  // The parameter is the master rounded to bf16: it moved, bf16 alone did not.
  CHECK(torch::equal(p.detach(), state.master.to(torch::kBFloat16)));
  CHECK(p[0].item<double>() < 1.0);
}

TEST_CASE("bf16 master weights follow the scalar formula with bf16 grads and decay") {
  torch::manual_seed(3);
  OptimOptions o;
  auto p = torch::randn({33}).to(torch::kBFloat16).requires_grad_(true);
  AdamW opt({{"decay", {p}, 0.1, 2.0}}, o);
  auto r = references(p);
  for (int s = 0; s < 10; ++s) {
    auto g = torch::randn({33}).to(torch::kBFloat16);
    p.mutable_grad() = g;
    opt.step(1e-3);
    reference_step(r, g, 2e-3, 0.1, o);
  }
  const auto master = values(opt.state(0, 0).master);
  for (size_t i = 0; i < master.size(); ++i)
    CHECK(master[i] == Approx(r[i].p).epsilon(1e-6).margin(1e-7));
  CHECK(torch::equal(p.detach(), opt.state(0, 0).master.to(torch::kBFloat16)));
}

TEST_CASE("AdamW rejects a non-contiguous parameter, naming it") {
  auto p = torch::randn({3, 4}).t().requires_grad_(true);
  CHECK_THROWS_WITH(AdamW({{"decay", {p}, 0.1, 1.0}}, OptimOptions{}),
                    Catch::Contains("parameter 0 of group 'decay'"));
}

TEST_CASE("learning-rate schedules") {
  OptimOptions o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  ScheduleOptions s;
  s.warmup_steps = 10;
  s.decay = ScheduleDecay::kCosine;
  CHECK(lr_at(o, s, 0, 110) == Approx(0.1));  // warmup start: lr / W
  CHECK(lr_at(o, s, 4, 110) == Approx(0.5));
  CHECK(lr_at(o, s, 9, 110) == Approx(1.0));    // warmup end
  CHECK(lr_at(o, s, 10, 110) == Approx(1.0));   // decay start
  CHECK(lr_at(o, s, 60, 110) == Approx(0.55));  // cosine midpoint = (lr + min_lr) / 2
  CHECK(lr_at(o, s, 35, 110) == Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(std::acos(-1.0) / 4))));
  CHECK(lr_at(o, s, 110, 110) == Approx(0.1));
  CHECK(lr_at(o, s, 500, 110) == Approx(0.1));
  s.decay = ScheduleDecay::kLinear;
  CHECK(lr_at(o, s, 35, 110) == Approx(1.0 - 0.9 * 0.25));
  CHECK(lr_at(o, s, 60, 110) == Approx(0.55));
  CHECK(lr_at(o, s, 110, 110) == Approx(0.1));
  s.decay = ScheduleDecay::kConstant;
  CHECK(lr_at(o, s, 5, 110) == Approx(0.6));  // warmup applies to constant too
  CHECK(lr_at(o, s, 100, 110) == Approx(1.0));
  s.decay = ScheduleDecay::kCosine;
  s.decay_steps = 20;  // decay ends at step 30
  CHECK(lr_at(o, s, 20, 110) == Approx(0.55));
  CHECK(lr_at(o, s, 50, 110) == Approx(0.1));
  s.warmup_steps = 0;
  CHECK(lr_at(o, s, 0, 110) == Approx(1.0));
}

TEST_CASE("global-norm clipping") {
  auto a = torch::zeros({2}).requires_grad_(true);
  auto b = torch::zeros({1}).requires_grad_(true);
  auto c = torch::zeros({1}).requires_grad_(true);  // no grad: ignored
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  CHECK(clip_grad_norm({a, b, c}, 10.0) == Approx(5.0));
  CHECK(a.grad()[0].item<double>() == 3.0);              // below the limit: untouched
  CHECK(clip_grad_norm({a, b, c}, 0.0) == Approx(5.0));  // max_norm 0: off
  CHECK(a.grad()[0].item<double>() == 3.0);
  CHECK(clip_grad_norm({a, b, c}, 1.0) == Approx(5.0));
  CHECK(a.grad()[0].item<double>() == Approx(3.0 / (5.0 + 1e-6)).epsilon(1e-6));
  CHECK(b.grad()[0].item<double>() == Approx(4.0 / (5.0 + 1e-6)).epsilon(1e-6));
  CHECK(std::sqrt(grad_norm_squared({a, b})) == Approx(1.0).epsilon(1e-5));

  b.mutable_grad() = torch::tensor({NAN});
  const double before = a.grad()[0].item<double>();
  CHECK(std::isnan(clip_grad_norm({a, b}, 1.0)));
  CHECK(a.grad()[0].item<double>() == before);  // untouched
  b.mutable_grad() = torch::tensor({INFINITY});
  CHECK(std::isinf(clip_grad_norm({a, b}, 1.0)));
  CHECK(a.grad()[0].item<double>() == before);
  CHECK(grad_norm_squared({c}) == 0.0);
}

TEST_CASE("gradient norm is accumulated in float64 for any grad dtype") {
  torch::manual_seed(5);
  // Large enough that float32 accumulation drifts by ~1e-5 relative.
  auto a = torch::zeros({1 << 21}).requires_grad_(true);
  auto b = torch::zeros({1000}, torch::kBFloat16).requires_grad_(true);
  auto d = torch::zeros({10}, torch::kDouble).requires_grad_(true);
  a.mutable_grad() = torch::randn({1 << 21}) * 3 + 1;
  b.mutable_grad() = torch::randn({1000}).to(torch::kBFloat16);
  d.mutable_grad() = torch::randn({10}, torch::kDouble);
  double naive = 0;
  for (const auto& t : {a, b, d})
    for (double x : values(t.grad())) naive += x * x;
  CHECK(grad_norm_squared({a, b, d}) == Approx(naive).epsilon(1e-10));

  scale_grads({a, b, d}, 0.5);
  CHECK(grad_norm_squared({a, b, d}) == Approx(naive / 4).epsilon(1e-10));  // 0.5 is exact in bf16
}

TEST_CASE("multi-tensor AdamW (host form of the CUDA kernel) matches ATen's fused AdamW") {
  moxie::testing::check_multi_tensor_adamw(torch::kCPU);
}
