// AdamW, schedules and clipping against naive scalar references.
#include <catch2/catch.hpp>

#include <cmath>

#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"

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

}  // namespace

TEST_CASE("AdamW follows the scalar formula across groups, steps and skipped params") {
  torch::manual_seed(16);
  OptimOptions o;
  o.beta1 = 0.8;
  o.beta2 = 0.9;
  auto a = torch::randn({3, 4}).requires_grad_(true);
  auto b = torch::randn({5}).requires_grad_(true);
  auto c = torch::randn({2}).requires_grad_(true);  // never gets a gradient
  const auto c0 = c.detach().clone();
  AdamW opt({{"decay", {a}, 0.1, 1.0}, {"no_decay", {b, c}, 0.0, 0.5}}, o);

  std::vector<ScalarAdamW> ra, rb;
  for (int64_t i = 0; i < a.numel(); ++i) ra.push_back({a.view(-1)[i].item<double>()});
  for (int64_t i = 0; i < b.numel(); ++i) rb.push_back({b.view(-1)[i].item<double>()});
  const double lr = 0.01;
  for (int s = 0; s < 5; ++s) {
    auto ga = torch::randn({3, 4});
    auto gb = torch::randn({5});
    a.mutable_grad() = ga;
    b.mutable_grad() = gb;
    opt.step(lr);
    opt.zero_grad();
    for (int64_t i = 0; i < a.numel(); ++i) ra[i].step(ga.view(-1)[i].item<double>(), lr, 0.1, o);
    for (int64_t i = 0; i < b.numel(); ++i) rb[i].step(gb.view(-1)[i].item<double>(), lr * 0.5, 0.0, o);
  }
  for (int64_t i = 0; i < a.numel(); ++i)
    CHECK(a.view(-1)[i].item<double>() == Approx(ra[i].p).epsilon(1e-5));
  for (int64_t i = 0; i < b.numel(); ++i)
    CHECK(b.view(-1)[i].item<double>() == Approx(rb[i].p).epsilon(1e-5));
  CHECK(torch::equal(c.detach(), c0));
  CHECK(opt.state(1, 1).step == 0);
  CHECK(opt.state(0, 0).step == 5);
  CHECK(!a.grad().defined());
}

TEST_CASE("bf16 parameters keep an fp32 master so tiny updates add up") {
  OptimOptions o;
  o.weight_decay = 0;
  auto p = torch::ones({4}, torch::kBFloat16).requires_grad_(true);
  AdamW opt({{"all", {p}, 0.0, 1.0}}, o);
  REQUIRE(opt.state(0, 0).master.defined());
  // Each step moves by ~lr = 1e-4, below bf16's resolution at 1.0 (2^-7 = 0.0078).
  for (int s = 0; s < 200; ++s) {
    p.mutable_grad() = torch::ones({4}, torch::kBFloat16);
    opt.step(1e-4);
  }
  const auto& master = opt.state(0, 0).master;
  CHECK(master.scalar_type() == torch::kFloat);
  CHECK(master[0].item<double>() == Approx(1.0 - 200 * 1e-4).epsilon(1e-4));
  // The parameter is the master rounded to bf16: it moved, which bf16 alone could not.
  CHECK(torch::equal(p.detach(), master.to(torch::kBFloat16)));
  CHECK(p[0].item<double>() < 1.0);
}

TEST_CASE("learning-rate schedules") {
  OptimOptions o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  ScheduleOptions s;
  s.warmup_steps = 10;
  s.decay = "cosine";
  CHECK(lr_at(o, s, 0, 110) == Approx(0.1));
  CHECK(lr_at(o, s, 9, 110) == Approx(1.0));
  CHECK(lr_at(o, s, 10, 110) == Approx(1.0));
  CHECK(lr_at(o, s, 60, 110) == Approx(0.55));  // cosine midpoint = (lr + min_lr) / 2
  CHECK(lr_at(o, s, 110, 110) == Approx(0.1));
  CHECK(lr_at(o, s, 500, 110) == Approx(0.1));
  s.decay = "linear";
  CHECK(lr_at(o, s, 35, 110) == Approx(1.0 - 0.9 * 0.25));
  s.decay = "constant";
  CHECK(lr_at(o, s, 100, 110) == Approx(1.0));
  s.decay = "cosine";
  s.decay_steps = 20;  // decay ends at step 30
  CHECK(lr_at(o, s, 20, 110) == Approx(0.55));
  CHECK(lr_at(o, s, 50, 110) == Approx(0.1));
}

TEST_CASE("global-norm clipping") {
  auto a = torch::zeros({2}).requires_grad_(true);
  auto b = torch::zeros({1}).requires_grad_(true);
  auto c = torch::zeros({1}).requires_grad_(true);  // no grad: ignored
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  CHECK(clip_grad_norm({a, b, c}, 10.0) == Approx(5.0));
  CHECK(a.grad()[0].item<double>() == Approx(3.0));  // below the limit: untouched
  CHECK(clip_grad_norm({a, b, c}, 1.0) == Approx(5.0));
  CHECK(std::sqrt(grad_norm_squared({a, b})) == Approx(1.0).epsilon(1e-5));
  CHECK(a.grad()[0].item<double>() == Approx(0.6).epsilon(1e-5));

  b.mutable_grad() = torch::tensor({NAN});
  CHECK(std::isnan(clip_grad_norm({a, b}, 1.0)));
  CHECK(a.grad()[0].item<double>() == Approx(0.6).epsilon(1e-5));  // untouched
}
