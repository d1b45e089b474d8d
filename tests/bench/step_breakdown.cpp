// Where a training step's time goes: forward, backward, clipping, optimizer,
// for a config's model on random tokens. Each phase is timed over the same
// steps, so the shares compare within one run on a noisy machine.
// Usage: bench_step_breakdown CONFIG [--set key=value]... [--steps N]
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "core/common/allocator.h"
#include "core/config/config.h"
#include "core/model/layers.h"
#include "core/train/param_groups.h"
#include "core/train/trainer.h"
#include "optim/clip.h"

using namespace moxie;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_step_breakdown CONFIG [--set key=value]... [--steps N]\n";
    return 2;
  }
  keep_freed_memory_for_reuse();
  std::vector<std::string> overrides;
  int steps = 10;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--set"))
      overrides.push_back(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps"))
      steps = std::atoi(argv[i + 1]);
  }
  const auto config = load_config(argv[1], overrides);
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));
  torch::manual_seed(0);
  CausalLM model(config.model, config.moe);
  AdamW optimizer(make_param_groups(model, config.optim), config.optim);
  auto params = model->parameters();
  const int64_t B = config.train.micro_batch_size, S = config.data.seq_len;

  double t_fwd = 0, t_bwd = 0, t_clip = 0, t_opt = 0;
  auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  for (int s = -2; s < steps; ++s) {  // two untimed warm-up steps
    auto tokens = torch::randint(0, config.model.vocab_size, {B, S + 1});
    auto inputs = tokens.narrow(1, 0, S), targets = tokens.narrow(1, 1, S);
    auto t0 = Clock::now();
    auto out = model(inputs);
    auto loss = masked_cross_entropy(out.logits, targets, torch::ones({B, S})) + out.aux_loss;
    const double f = since(t0);
    t0 = Clock::now();
    loss.backward();
    const double b = since(t0);
    t0 = Clock::now();
    clip_grad_norm(params, config.optim.grad_clip);
    const double c = since(t0);
    t0 = Clock::now();
    optimizer.step(1e-3);
    optimizer.zero_grad();
    const double o = since(t0);
    if (s >= 0) t_fwd += f, t_bwd += b, t_clip += c, t_opt += o;
  }
  if (const char* trace = std::getenv("MOXIE_PROFILE")) {
    // One more step under the autograd profiler: a chrome://tracing JSON of every op.
    torch::autograd::profiler::RecordProfile guard(trace);
    auto tokens = torch::randint(0, config.model.vocab_size, {B, S + 1});
    auto out = model(tokens.narrow(1, 0, S));
    (masked_cross_entropy(out.logits, tokens.narrow(1, 1, S), torch::ones({B, S})) + out.aux_loss)
        .backward();
  }
  const double total = t_fwd + t_bwd + t_clip + t_opt;
  auto row = [&](const char* name, double t) {
    std::printf("%-10s %8.1f ms/step  %5.1f%%\n", name, 1e3 * t / steps, 100 * t / total);
  };
  row("forward", t_fwd);
  row("backward", t_bwd);
  row("clip", t_clip);
  row("optimizer", t_opt);
  std::printf("%-10s %8.1f ms/step  %.0f tokens/s\n", "total", 1e3 * total / steps,
              B * S * steps / total);
  return 0;
}
