// The training loop and the set-up it needs.
#include "core/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <ostream>
#include <set>

#include "core/common/file_io.h"
#include "core/config/layout.h"
#include "core/train/evaluate.h"
#include "core/train/faults.h"
#include "core/train/run_checkpoints.h"
#include "data/batch_sources.h"
#include "data/loader.h"
#include "optim/schedule.h"
#include "parallel/parallelize.h"
#include "parallel/watchdog.h"

namespace moxie {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Where ranks other than 0 send their log lines.
struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};
std::ostream& null_stream() {
  static NullBuffer buffer;
  static std::ostream stream(&buffer);
  return stream;
}

// train.device: the CPU, or this rank's GPU (device = local rank; the
// launcher's process groups have made it current).
torch::Device device_of(const Config& c, const ProcessGroups& g) {
  if (c.train.device == DeviceKind::kCpu) return torch::kCPU;
  const int64_t visible = static_cast<int64_t>(torch::cuda::device_count());
  if (visible == 0) {
    throw ConfigError(
        "train.device=cuda, but no CUDA device is visible to rank " +
        std::to_string(g.world->rank()) +
        (torch::cuda::is_available() ? "" : " (this LibTorch or driver has no CUDA)") +
        "; set train.device=cpu, or run where a GPU is");
  }
  if (g.local_rank >= visible) {
    throw ConfigError("train.device=cuda: rank " + std::to_string(g.world->rank()) +
                      " is local rank " + std::to_string(g.local_rank) + " but this node has " +
                      std::to_string(visible) +
                      " visible GPU(s); launch at most that many ranks per node");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(g.local_rank));
}

// The launcher made the groups from this config's layout.
ProcessGroups checked(ProcessGroups g, const Config& c) {
  const auto& d = g.dims;
  const auto& p = c.parallel;
  if (d.dp() != p.dp || d.tp() != p.tp || d.ep() != p.ep || d.pp() != p.pp) {
    throw std::logic_error("the process groups were made for " + d.describe() +
                           ", not for this config's parallel section");
  }
  return g;
}

// finetune.freeze: "router", "experts", or any part of a name.
bool frozen_by(const std::vector<std::string>& patterns, const ParamSpec& spec) {
  for (const auto& p : patterns) {
    if (p == "router"    ? spec.role == ParamRole::kRouter
        : p == "experts" ? spec.role == ParamRole::kExpert
                         : spec.name.find(p) != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

Trainer::Trainer(const Config& config, std::ostream& log)
    : Trainer(config, single_process_groups(layout_of(config, 1)), log) {}

Trainer::Trainer(const Config& config, ProcessGroups groups, std::ostream& log)
    : config_(config),
      groups_(checked(std::move(groups), config)),
      rank0_(groups_.world->rank() == 0),
      log_(rank0_ ? log : null_stream()),
      device_(device_of(config_, groups_)) {
  write_run_folder();
  log_ << "layout: " << groups_.dims.describe() << "; " << groups_.local_size
       << " rank(s) per node\n";
  adopt_dataset_shapes();
  if (config_.train.threads > 0) torch::set_num_threads(static_cast<int>(config_.train.threads));
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  build_model();
  make_layouts();
  step_ = make_train_step(config_);
}

void Trainer::write_run_folder() {
  if (!rank0_) return;
  const auto& dir = config_.train.run_dir;
  std::filesystem::create_directories(dir);
  const std::string resolved = to_yaml(config_);
  write_file_atomically(dir + "/config.yaml", resolved, "run config");
  log_ << "resolved config (saved to " << dir << "/config.yaml):\n" << resolved << "\n";
}

// A dataset gives the tokenizer's vocabulary and the media encoders' shapes.
void Trainer::adopt_dataset_shapes() {
  if (config_.data.source != DataSourceKind::kDataset) return;
  const auto& data = config_.data;
  const auto info = read_dataset_info(data.path);
  auto& m = config_.model;
  if (m.vocab_size < info.special.vocab_size) {
    throw std::runtime_error("model.vocab_size=" + std::to_string(m.vocab_size) +
                             " is smaller than the vocabulary of the dataset's tokenizer (" +
                             info.tokenizer + ", " + std::to_string(info.special.vocab_size) +
                             " ids); set model.vocab_size to at least that");
  }
  if (!data.eval_path.empty()) {
    const auto eval = read_dataset_info(data.eval_path);
    if (eval.tokenizer != info.tokenizer || eval.image_size != info.image_size ||
        eval.image_patch != info.image_patch || eval.audio_frame != info.audio_frame) {
      throw std::runtime_error(
          "data.eval_path " + data.eval_path +
          " was built with another tokenizer or media settings than data.path " + data.path +
          "; build both with the same options");
    }
  }
  if (info.images > 0) {
    m.image_patch_dim =
        static_cast<int64_t>(info.image_patch) * info.image_patch * info.image_channels;
    const int64_t side = info.image_size / info.image_patch;
    m.image_patches = side * side;
  }
  if (info.audio_clips > 0) m.audio_frame = info.audio_frame;
  log_ << "data: dataset " << data.path << ", " << info.samples << " samples (" << info.images
       << " images, " << info.audio_clips << " audio clips), tokenizer " << info.tokenizer << "\n";
}

void Trainer::build_model() {
  const auto& train = config_.train;
  // Initialised on the CPU from layout-independent generators, so a GPU run
  // starts from exactly the weights of a CPU run with the same seed.
  model_ = CausalLM(config_.model, config_.moe, parallelize(groups_));
  if (!device_.is_cpu()) {
    model_->to(device_);
    log_ << "device: " << device_ << " on every rank (device = local rank), "
         << to_string(train.dtype)
         << " parameters and activations, float32 master weights and gradient reduction\n";
  }
  if (train.dtype == TrainDtype::kBFloat16) {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) p.set_data(p.to(torch::kBFloat16));
  }
  // Fine-tuning: adapters (everything else frozen), frozen parts.
  if (config_.lora.rank > 0) {
    const auto adapted = model_->add_lora(config_.lora);
    const auto specs = model_->param_specs();
    auto params = model_->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      if (!specs[i].adapter) params[i].set_requires_grad(false);
    }
    int64_t trainable = 0, all = 0;
    for (const auto& p : params) {
      all += p.numel();
      if (p.requires_grad()) trainable += p.numel();
    }
    log_ << "LoRA rank " << config_.lora.rank << " on " << adapted << " weights: " << trainable
         << " of " << all << " parameters on this rank train, the rest are frozen\n";
  }
}

void Trainer::make_layouts() {
  const auto specs = model_->param_specs();
  params_ = model_->parameters();
  std::vector<bool> trainable;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (frozen_by(config_.finetune.freeze, specs[i])) params_[i].set_requires_grad(false);
    trainable.push_back(params_[i].requires_grad());
  }
  layouts_ = make_param_layouts(specs, trainable, groups_.dims,
                                coordinates_of(groups_.dims, groups_.world->rank()),
                                config_.parallel.zero1);
  gradients_ = std::make_unique<Gradients>(params_, layouts_, groups_, config_.parallel);
}

// One run's state.
struct Trainer::Loop {
  TrainSummary summary;
  RunCounters counters;
  BatchSources data;
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<RunCheckpoints> checkpoints;
  std::unique_ptr<MetricSinks> metrics;
  std::set<int64_t> poisoned_steps;
  std::vector<MoELayer> moe_layers;
  std::unique_ptr<Watchdog> watchdog;  // multi-rank runs with a timeout
  double best_eval = std::numeric_limits<double>::infinity();
  int64_t first_step = 0;  // where this run (re)started
  int64_t best_step = 0, since_best = 0, last_step = 0;
  bool stopped = false;
};

TrainSummary Trainer::run() {
  const auto& train = config_.train;
  check_resume_target(train);  // before any data is read
  Loop loop;
  SourceSetup setup{static_cast<uint64_t>(train.seed),
                    train.micro_batch_size,
                    train.eval_batches,
                    groups_.dp_index,
                    groups_.dims.dp(),
                    rank0_ ? train.run_dir : ""};
  loop.data = make_batch_sources(config_.data, setup);
  for (const auto& line : loop.data.log) log_ << line << "\n";
  loop.summary.unigram_entropy_nats = loop.data.unigram_entropy_nats;

  // Of this rank's shard; idle: expert weights a token does not use.
  int64_t n_params = 0, n_idle = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    n_params += params_[i].numel();
    if (layouts_[i].expert())
      n_idle += params_[i].numel() * (config_.moe.num_experts - config_.moe.top_k) /
                config_.moe.num_experts;
  }
  log_ << "model: " << n_params << " parameters, " << n_params - n_idle << " active per token; "
       << config_.model.n_layers << " layers, " << config_.moe.num_experts << " experts (top-"
       << config_.moe.top_k << ")\n";

  std::function<bool(const torch::Tensor&)> owned;
  if (config_.parallel.zero1) owned = [&](const torch::Tensor& p) { return gradients_->owns(p); };
  loop.optimizer = std::make_unique<AdamW>(
      make_param_groups(params_, layouts_, config_.optim, owned, config_.finetune.router_lr),
      config_.optim);
  if (config_.parallel.zero1) {
    int64_t mine = 0, all = 0;
    for (const auto& g : loop.optimizer->groups())
      for (const auto& p : g.params) mine += p.numel();
    for (const auto& p : params_) all += p.numel();
    log_ << "ZeRO-1: rank 0 keeps optimizer state for " << mine << " of its " << all
         << " parameters\n";
  }
  loop.moe_layers = model_->moe_layers();

  // Fine-tuning: the base checkpoint's weights (any layout) first; a
  // checkpoint of this run, if any, then replaces what it holds.
  loop.checkpoints =
      std::make_unique<RunCheckpoints>(config_, groups_, model_, layouts_, *loop.optimizer, log_);
  loop.checkpoints->load_base();
  loop.counters = loop.checkpoints->resume(*loop.data.train);
  loop.first_step = loop.counters.step;
  loop.summary.skipped_steps = loop.counters.skipped_steps;
  if (train.checkpoint_every > 0) catch_stop_signals();

  SinkOptions sinks{train.run_dir, train.log_every, &log_, /*append=*/loop.counters.step > 0};
  loop.metrics = make_metric_sinks(sinks, rank0_);
  loop.poisoned_steps = injected_nonfinite_steps(groups_.world->rank());
  loop.last_step = train.steps;
  const double timeout = config_.parallel.collective_timeout_s;
  if (groups_.dims.world() > 1 && timeout > 0) {
    loop.watchdog = std::make_unique<Watchdog>(train.run_dir + "/heartbeat", groups_.world->rank(),
                                               groups_.dims.world(), timeout);
  }

  for (int64_t step = loop.counters.step; step < train.steps; ++step) {
    const auto m = train_one_step(loop, step);
    loop.summary.train_losses.push_back(m.loss);
    loop.metrics->step(m);
    loop.data.train->step_done(step + 1);
    const bool go_on = after_step(loop, step);
    if (loop.watchdog) loop.watchdog->progress();
    stop_if_injected(groups_.world->rank(), step + 1);
    if (!go_on) break;
  }
  loop.checkpoints->commit_pending();
  if (!loop.stopped) finish(loop);
  return loop.summary;
}

StepMetrics Trainer::train_one_step(Loop& loop, int64_t step) {
  const auto& train = config_.train;
  const auto t0 = Clock::now();
  StepMetrics m;
  m.step = step + 1;
  m.total_steps = train.steps;
  m.lr = lr_at(config_.optim, config_.schedule, step, train.steps);

  std::vector<Batch> micro_batches;
  for (int64_t micro = 0; micro < train.grad_accum; ++micro)
    micro_batches.push_back(loop.data.train->next());
  StepContext context{model_,  config_, groups_,
                      device_, nullptr, loop.poisoned_steps.count(step + 1) > 0};
  if (gradients_->overlapped()) context.before_last_backward = [&] { gradients_->arm(); };
  const auto report = step_->forward_backward(micro_batches, context);
  m.loss = report.loss;
  m.aux_loss = report.aux_loss;
  m.extra = report.extra;

  m.grad_norm = gradients_->sync_and_clip(config_.optim.grad_clip);
  if (gradients_->overlapped() && step == 0) log_ << gradients_->overlap_report() << "\n";
  m.skipped = !std::isfinite(m.loss) || !std::isfinite(m.grad_norm);
  auto& counters = loop.counters;
  if (m.skipped) {
    ++loop.summary.skipped_steps;
    loop.metrics->message(
        "step " + std::to_string(step + 1) + " skipped: its loss or gradient is not finite (" +
        std::to_string(counters.bad_in_a_row + 1) +
        " in a row, train.max_nonfinite_steps=" + std::to_string(train.max_nonfinite_steps) + ")");
    if (++counters.bad_in_a_row >= train.max_nonfinite_steps) {
      throw std::runtime_error(
          "training diverged: " + std::to_string(counters.bad_in_a_row) +
          " steps in a row had a non-finite loss or gradient (step " + std::to_string(step + 1) +
          "); resume from the last checkpoint with a lower optim.lr or a tighter "
          "optim.grad_clip (train.max_nonfinite_steps sets the limit)");
    }
  } else {
    counters.bad_in_a_row = 0;
    loop.optimizer->step(m.lr);
    if (config_.parallel.zero1) gradients_->broadcast_updates();
    for (size_t l = 0; l < loop.moe_layers.size(); ++l) {
      loop.moe_layers[l]->gate->update_bias(report.tokens_per_expert_LE[l]);
    }
  }
  model_->zero_grad();  // every parameter's, not only those this rank's optimizer updates

  if (!loop.moe_layers.empty()) {
    double lo = 1, hi = 0;
    for (const auto& load : report.tokens_per_expert_LE) {
      auto share = load.to(torch::kDouble) / load.sum().item<double>();
      lo = std::min(lo, share.min().item<double>());
      hi = std::max(hi, share.max().item<double>());
    }
    m.load_min = lo;
    m.load_max = hi;
    m.balance = report.balance / static_cast<double>(loop.moe_layers.size() * train.grad_accum);
    m.dropped_frac = static_cast<double>(report.dropped) / static_cast<double>(report.assignments);
  }
  m.step_time_s = seconds_since(t0);
  // The global batch: every data-parallel replica consumed as many tokens.
  m.tokens_per_s = static_cast<double>(report.tokens * groups_.dims.dp()) / m.step_time_s;
  return m;
}

void Trainer::evaluate_at(Loop& loop, int64_t step) {
  if (loop.data.eval.empty()) return;
  const auto r = evaluate(model_, loop.data.eval, *groups_.dp, device_);
  loop.summary.eval_losses.emplace_back(step, r.loss);
  loop.metrics->eval(step, r.loss);
  const std::pair<const char*, const MediaLoss*> media[] = {{"an image", &r.image},
                                                            {"audio", &r.audio}};
  for (const auto& [what, loss] : media) {
    if (!loss->present) continue;
    (loss == &r.image ? loop.summary.eval_image_loss : loop.summary.eval_audio_loss) = {
        loss->with, loss->blanked};
    loop.metrics->message("eval step " + std::to_string(step) + ": text of samples with " + what +
                          " " + std::to_string(loss->with) + " nats/token; with it blanked " +
                          std::to_string(loss->blanked) + " nats/token");
  }
}

bool Trainer::after_step(Loop& loop, int64_t step) {
  const auto& train = config_.train;
  const int64_t done = step + 1;
  loop.counters.step = done;
  loop.counters.skipped_steps = loop.summary.skipped_steps;
  bool early_stop = false;
  if (train.eval_every > 0 && done % train.eval_every == 0 && done < train.steps) {
    evaluate_at(loop, done);
    // Early stopping on the eval loss (the same on every rank).
    if (config_.finetune.early_stop_patience > 0 && !loop.summary.eval_losses.empty()) {
      const double loss = loop.summary.eval_losses.back().second;
      if (loss < loop.best_eval) {
        loop.best_eval = loss;
        loop.best_step = done;
        loop.since_best = 0;
      } else {
        early_stop = ++loop.since_best >= config_.finetune.early_stop_patience;
      }
    }
  }
  if (train.checkpoint_every > 0) {
    loop.checkpoints->commit_if_written();
    auto signal = torch::tensor({static_cast<double>(stop_signal())}, torch::kDouble);
    if (groups_.dims.world() > 1) groups_.world->all_reduce(signal, ReduceOp::kMax);
    const bool stop = signal.item<double>() > 0 || done == train.stop_at;
    if (done % train.checkpoint_every == 0 || done == train.steps || stop || early_stop) {
      loop.checkpoints->save(done, loop.counters, *loop.data.train,
                             /*background=*/!stop && done < train.steps);
    }
    if (stop) {
      loop.checkpoints->commit_pending();
      loop.metrics->message(
          std::string(done == train.stop_at ? "stopped at train.stop_at" : "stopped by a signal") +
          " after step " + std::to_string(done) +
          "; resume with: moxie train CONFIG --resume latest");
      loop.stopped = true;
      return false;
    }
  }
  if (early_stop) {
    loop.checkpoints->commit_pending();
    loop.metrics->message("stopped early after step " + std::to_string(done) +
                          ": the eval loss has not improved for " +
                          std::to_string(loop.since_best) + " evaluations (best " +
                          std::to_string(loop.best_eval) + " at step " +
                          std::to_string(loop.best_step) + "; finetune.early_stop_patience)");
    loop.last_step = done;
    return false;
  }
  return true;
}

void Trainer::finish(Loop& loop) {
  const auto& train = config_.train;
  auto& summary = loop.summary;
  if (loop.first_step >= train.steps) {
    loop.metrics->message("the run was already complete at step " +
                          std::to_string(loop.first_step) + "; nothing to train");
  }
  evaluate_at(loop, loop.last_step);
  summary.skipped_samples = loop.data.train->skipped();
  const bool dataset = config_.data.source == DataSourceKind::kDataset;
  if (summary.eval_losses.empty()) {
    loop.metrics->message("done: " + std::to_string(summary.skipped_steps) + " steps skipped, " +
                          std::to_string(summary.skipped_samples) +
                          " damaged samples skipped; no evaluation");
  } else if (dataset) {
    loop.metrics->message("done: eval loss " + std::to_string(summary.eval_losses.back().second) +
                          " nats/token (" + std::to_string(summary.skipped_steps) +
                          " steps skipped, " + std::to_string(summary.skipped_samples) +
                          " damaged samples skipped)");
  } else {
    loop.metrics->message("done: eval loss " + std::to_string(summary.eval_losses.back().second) +
                          " nats/token vs unigram entropy " +
                          std::to_string(summary.unigram_entropy_nats) + " nats/token (" +
                          std::to_string(summary.skipped_steps) + " steps skipped)");
  }
}

}  // namespace moxie
