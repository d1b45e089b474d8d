// Training loop.
#include "core/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <ostream>

#include "core/checkpoint.h"
#include "core/layers.h"
#include "core/metrics.h"
#include "core/plan.h"
#include "data/dataset_source.h"
#include "data/provenance.h"
#include "data/text_source.h"
#include "optim/clip.h"
#include "optim/schedule.h"

namespace moxie {
namespace {

bool is_router_param(const std::string& name) { return name.find("block_sparse_moe.gate.") != std::string::npos; }

using Clock = std::chrono::steady_clock;

// Fault injection for tests of the non-finite-step path:
// MOXIE_FAULT_NONFINITE="STEP[,STEP...][@RANK]" makes the loss of those steps
// NaN (on RANK only, or on every rank), as a bad batch or an overflow would.
std::set<int64_t> injected_nonfinite_steps(int rank) {
  std::set<int64_t> steps;
  const char* env = std::getenv("MOXIE_FAULT_NONFINITE");
  if (env == nullptr || *env == '\0') return steps;
  std::string spec = env;
  const auto at = spec.find('@');
  try {
    if (at != std::string::npos) {
      if (std::stoi(spec.substr(at + 1)) != rank) return steps;
      spec.resize(at);
    }
    std::stringstream in(spec);
    for (std::string item; std::getline(in, item, ',');) steps.insert(std::stoll(item));
  } catch (const std::exception&) {
    throw std::runtime_error(std::string("MOXIE_FAULT_NONFINITE='") + env +
                             "' is not STEP[,STEP...][@RANK]; unset it outside of tests");
  }
  return steps;
}

// SIGTERM / SIGINT while checkpointing: save at the end of the step, then stop.
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

std::string to_hex(const torch::Tensor& bytes) {
  static const char* digits = "0123456789abcdef";
  auto t = bytes.contiguous();
  const auto* p = t.data_ptr<uint8_t>();
  std::string out;
  for (int64_t i = 0; i < t.numel(); ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

torch::Tensor from_hex(const std::string& hex) {
  auto t = torch::empty({static_cast<int64_t>(hex.size() / 2)}, torch::kByte);
  auto* p = t.data_ptr<uint8_t>();
  for (size_t i = 0; i + 1 < hex.size(); i += 2) p[i / 2] = static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return t;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

ModelInputs inputs_of(const Batch& b, bool blank_media = false) {
  ModelInputs in;
  in.tokens = b.tokens;
  in.doc = b.doc;
  in.patches = blank_media && b.patches.defined() ? torch::zeros_like(b.patches) : b.patches;
  in.patch_slot = b.patch_slot;
  in.patch_index = b.patch_index;
  in.frames = blank_media && b.frames.defined() ? torch::zeros_like(b.frames) : b.frames;
  in.frame_slot = b.frame_slot;
  in.frame_index = b.frame_index;
  return in;
}

// The loss mask restricted to documents that hold an image (slots: patch
// slots) or audio (frame slots).
torch::Tensor media_loss_mask(const Batch& b, const torch::Tensor& slots) {
  if (!b.doc.defined() || !slots.defined() || slots.numel() == 0) return torch::zeros_like(b.loss_mask);
  auto docs = b.doc.reshape({-1}).index_select(0, slots);
  return b.loss_mask * torch::isin(b.doc, docs).to(b.loss_mask.scalar_type());
}

LoaderOptions loader_options(const Config& c, int64_t dp_rank, int64_t dp_size) {
  LoaderOptions o;
  o.path = c.data.path;
  o.seed = static_cast<uint64_t>(c.train.seed);
  o.seq_len = c.data.seq_len;
  o.rows_per_rank = c.train.micro_batch_size;
  o.dp_rank = dp_rank;
  o.dp_size = dp_size;
  o.shuffle_block = static_cast<uint64_t>(c.data.shuffle_block);
  o.prefetch_threads = static_cast<int>(c.data.prefetch_threads);
  o.prefetch_bytes = static_cast<uint64_t>(c.data.prefetch_mb) << 20;
  o.on_corrupt = c.data.on_corrupt;
  o.max_skipped = static_cast<uint64_t>(c.data.max_skipped);
  o.verify_shards = c.data.verify_shards;
  return o;
}

}  // namespace

std::vector<ParamGroup> make_param_groups(CausalLM& model, const OptimOptions& optim,
                                         const std::function<bool(const torch::Tensor&)>& keep, double router_lr) {
  ParamGroup decay{"decay", {}, optim.weight_decay, 1.0};
  ParamGroup no_decay{"no_decay", {}, 0.0, 1.0};
  ParamGroup router{"router", {}, optim.weight_decay, router_lr};
  for (const auto& item : model->named_parameters()) {
    if (keep && !keep(item.value())) continue;
    if (!item.value().requires_grad()) continue;  // frozen: no optimizer state
    const auto& name = item.key();
    if (router_lr != 1.0 && is_router_param(name)) {
      router.params.push_back(item.value());
      continue;
    }
    const bool embedding = name.find("embed_tokens") != std::string::npos;
    const bool matrix = item.value().dim() >= 2;
    if (matrix && (!embedding || optim.decay_embeddings)) {
      decay.params.push_back(item.value());
    } else {
      no_decay.params.push_back(item.value());
    }
  }
  if (router.params.empty()) return {decay, no_decay};
  return {decay, no_decay, router};
}

namespace {
// Where ranks other than 0 send their log lines.
struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};
std::ostream& null_stream() {
  static NullBuffer buffer;
  static std::ostream stream(&buffer);
  return stream;
}

ParallelDims checked_dims(const Config& c, const ProcessGroups& g) {
  return layout_of(c, g.world->size());
}

// train.device: the CPU, or this rank's GPU (device = local rank; the
// launcher's process groups have made it current).
torch::Device device_of(const Config& c, const ProcessGroups& g) {
  if (c.train.device == DeviceKind::kCpu) return torch::kCPU;
  const int64_t visible = static_cast<int64_t>(torch::cuda::device_count());
  if (visible == 0) {
    throw ConfigError("train.device=cuda, but no CUDA device is visible to rank " + std::to_string(g.world->rank()) +
                      (torch::cuda::is_available() ? "" : " (this LibTorch or driver has no CUDA)") +
                      "; set train.device=cpu, or run where a GPU is");
  }
  if (g.local_rank >= visible) {
    throw ConfigError("train.device=cuda: rank " + std::to_string(g.world->rank()) + " is local rank " +
                      std::to_string(g.local_rank) + " but this node has " + std::to_string(visible) +
                      " visible GPU(s); launch at most that many ranks per node");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(g.local_rank));
}

// finetune.freeze: "router", "experts", or any part of a name.
bool frozen_by(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns) {
    if (p == "router" ? is_router_param(name)
        : p == "experts" ? name.find(".experts.") != std::string::npos
                         : name.find(p) != std::string::npos) {
      return true;
    }
  }
  return false;
}
}  // namespace

Trainer::Trainer(const Config& config, std::ostream& log)
    : Trainer(config, single_process_groups(), log) {}

Trainer::Trainer(const Config& config, ProcessGroups groups, std::ostream& log)
    : config_(config),
      groups_(std::move(groups)),
      dims_(checked_dims(config_, groups_)),
      rank0_(groups_.world->rank() == 0),
      log_(rank0_ ? log : null_stream()),
      device_(device_of(config_, groups_)) {
  const auto& train = config_.train;
  if (rank0_) {
    std::filesystem::create_directories(train.run_dir);
    const std::string resolved = to_yaml(config_);
    std::ofstream out(train.run_dir + "/config.yaml");
    out << resolved;
    if (!out) throw std::runtime_error("cannot write " + train.run_dir + "/config.yaml");
    log_ << "resolved config (saved to " << train.run_dir << "/config.yaml):\n" << resolved << "\n";
  }
  log_ << "layout: " << dims_.describe() << "; " << groups_.local_size << " rank(s) per node\n";

  if (config_.data.source == DataSourceKind::kDataset) {
    // The tokenizer's vocabulary and the media encoders come from the dataset.
    const auto info = read_dataset_info(config_.data.path);
    auto& m = config_.model;
    if (m.vocab_size < info.special.vocab_size) {
      throw std::runtime_error("model.vocab_size=" + std::to_string(m.vocab_size) +
                               " is smaller than the vocabulary of the dataset's tokenizer (" +
                               info.tokenizer + ", " + std::to_string(info.special.vocab_size) +
                               " ids); set model.vocab_size to at least that");
    }
    if (!config_.data.eval_path.empty()) {
      const auto eval = read_dataset_info(config_.data.eval_path);
      if (eval.tokenizer != info.tokenizer || eval.image_size != info.image_size ||
          eval.image_patch != info.image_patch || eval.audio_frame != info.audio_frame) {
        throw std::runtime_error("data.eval_path " + config_.data.eval_path +
                                 " was built with another tokenizer or media settings than data.path " +
                                 config_.data.path + "; build both with the same options");
      }
    }
    if (info.images > 0) {
      m.image_patch_dim = static_cast<int64_t>(info.image_patch) * info.image_patch * info.image_channels;
      const int64_t side = info.image_size / info.image_patch;
      m.image_patches = side * side;
    }
    if (info.audio_clips > 0) m.audio_frame = info.audio_frame;
    log_ << "data: dataset " << config_.data.path << ", " << info.samples << " samples ("
         << info.images << " images, " << info.audio_clips << " audio clips), tokenizer "
         << info.tokenizer << "\n";
  }
  if (train.threads > 0) torch::set_num_threads(static_cast<int>(train.threads));
  torch::manual_seed(static_cast<uint64_t>(train.seed));
  MoEParallel moe_parallel;
  if (dims_.ep() > 1) {
    moe_parallel.dispatcher = std::make_shared<AllToAllTokenDispatcher>(config_.moe, *groups_.ep);
  }
  // The balance loss counts experts over the whole global batch: every DP
  // replica, and under sequence parallelism every TP rank's slice.
  moe_parallel.balance_group = groups_.dp_tp.get();
  if (dims_.tp() > 1) moe_parallel.tp.group = groups_.tp.get();
  // Initialised on the CPU from layout-independent generators, so a GPU run
  // starts from exactly the weights of a CPU run with the same seed.
  model_ = CausalLM(config_.model, config_.moe, moe_parallel);
  if (!device_.is_cpu()) {
    model_->to(device_);
    log_ << "device: " << device_ << " on every rank (device = local rank), " << to_string(train.dtype)
         << " parameters and activations, float32 master weights and gradient reduction\n";
  }
  if (train.dtype == TrainDtype::kBFloat16) {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) p.set_data(p.to(torch::kBFloat16));
  }
  // Fine-tuning: adapters (everything else frozen), frozen parts.
  if (config_.lora.rank > 0) {
    const auto adapted = model_->add_lora(config_.lora);
    for (auto& item : model_->named_parameters()) {
      if (item.key().find("lora_") == std::string::npos) item.value().set_requires_grad(false);
    }
    int64_t trainable = 0, all = 0;
    for (const auto& p : model_->parameters()) {
      all += p.numel();
      if (p.requires_grad()) trainable += p.numel();
    }
    log_ << "LoRA rank " << config_.lora.rank << " on " << adapted << " weights: " << trainable << " of " << all
         << " parameters on this rank train, the rest are frozen\n";
  }
  for (auto& item : model_->named_parameters()) {
    if (frozen_by(config_.finetune.freeze, item.key())) item.value().set_requires_grad(false);
  }
  // Every gradient ends as the mean over the dp replicas of each replica's
  // gradient. Replicated weights (norms, routers) see only this rank's
  // sequence slice under TP: summed over dp x tp. TP-split weights are whole
  // per slice: summed over dp. An expert's gradient already holds every EP
  // rank's tokens: summed over its expert-data-parallel group.
  param_sets_.resize(3);
  auto& replicated = param_sets_[0];
  auto& split = param_sets_[1];
  auto& experts = param_sets_[2];
  replicated.what = "replicated";
  replicated.sync_group = groups_.dp_tp.get();
  split.what = "tensor-parallel";
  split.sync_group = groups_.dp.get();
  split.norm_group = groups_.tp.get();
  experts.what = "expert";
  experts.sync_group = groups_.expert_dp.get();
  experts.norm_group = groups_.ep.get();
  for (const auto& item : model_->named_parameters()) {
    if (!item.value().requires_grad()) continue;  // frozen: no gradient to sync
    auto& set = item.key().find(".experts.") != std::string::npos ? experts
                : model_->is_tensor_parallel(item.key())             ? split
                                                                     : replicated;
    set.params.push_back(item.value());
  }
  const double inv_dp = 1.0 / static_cast<double>(dims_.dp());
  overlap_ = config_.parallel.overlap_grad_sync && dims_.world() > 1;
  for (auto& set : param_sets_) {
    set.sync = std::make_unique<GradientSync>(set.params, *set.sync_group, inv_dp, 32 << 20,
                                              overlap_);
    if (config_.parallel.zero1) set.zero = std::make_unique<Zero1Partition>(set.params, *set.sync_group);
  }
}

double Trainer::sync_and_clip() {
  if (dims_.world() > 1) {
    for (auto& set : param_sets_) set.sync->sync();
  }
  // Each parameter counted once: a replicated gradient is now equal
  // everywhere; TP slices and EP experts are summed over the ranks that hold
  // different parts.
  double sq = 0;
  for (const auto& set : param_sets_) {
    auto part = torch::tensor({grad_norm_squared(set.params)}, torch::kDouble);
    if (set.norm_group) set.norm_group->all_reduce(part, ReduceOp::kSum);
    sq += part.item<double>();
  }
  const double norm = std::sqrt(sq);
  const double max_norm = config_.optim.grad_clip;
  if (std::isfinite(norm) && max_norm > 0 && norm > max_norm) {
    for (const auto& set : param_sets_) scale_grads(set.params, max_norm / (norm + 1e-6));
  }
  return norm;
}

TrainSummary Trainer::run() {
  const auto& train = config_.train;
  const auto& data = config_.data;
  TrainSummary summary;
  // A resume that cannot happen fails before any data is read.
  if (train.resume == "latest" && committed_checkpoints(train.run_dir).empty()) {
    throw std::runtime_error("--resume latest: no committed checkpoint in " + train.run_dir +
                             "/checkpoints; train without --resume to start the run");
  }
  if (train.resume != "auto" && train.resume != "latest" && train.resume != "none" &&
      !std::filesystem::is_directory(train.resume)) {
    throw std::runtime_error("checkpoint folder " + train.resume +
                             " does not exist; name a folder under RUN/checkpoints, or use --resume latest");
  }

  std::unique_ptr<BatchSource> source;
  DatasetSource* dataset = nullptr;
  std::unique_ptr<ProvenanceLog> provenance;
  std::vector<Batch> eval_batches;
  LoaderOptions dataset_options;
  RandomWindowSource* text_source = nullptr;
  if (data.source == DataSourceKind::kDataset) {
    auto options = loader_options(config_, groups_.dp_index, dims_.dp());
    dataset_options = options;
    auto owned = std::make_unique<DatasetSource>(options);
    dataset = owned.get();
    source = std::move(owned);
    if (rank0_) {
      provenance = std::make_unique<ProvenanceLog>(train.run_dir, data.path, dataset->loader().state(),
                                                   options.shuffle_block);
    }
    if (!data.eval_path.empty()) {
      options.path = data.eval_path;
      options.prefetch_threads = 0;
      DatasetLoader eval(options);
      for (int64_t i = 0; i < train.eval_batches; ++i) eval_batches.push_back(to_batch(eval.next()));
      log_ << "data: evaluating on " << train.eval_batches << " batches of " << data.eval_path << "\n";
    } else {
      log_ << "data: no data.eval_path, so no held-out evaluation\n";
    }
  } else {
    auto corpus = load_text_corpus(data);
    summary.unigram_entropy_nats = corpus.unigram_entropy_nats;
    log_ << "data: " << corpus.train_documents << " train documents (" << corpus.train.size()
         << " tokens), " << corpus.eval_documents << " eval documents (" << corpus.eval.size()
         << " tokens); unigram entropy " << corpus.unigram_entropy_nats << " nats/token\n";
    auto train_stream = std::make_shared<const std::vector<int32_t>>(std::move(corpus.train));
    auto owned = std::make_unique<RandomWindowSource>(train_stream, train.micro_batch_size, data.seq_len,
                                                      static_cast<uint64_t>(train.seed), groups_.dp_index,
                                                      dims_.dp());
    text_source = owned.get();
    source = std::move(owned);
    eval_batches = make_eval_batches(corpus.eval, train.micro_batch_size, data.seq_len,
                                     train.eval_batches, groups_.dp_index, dims_.dp());
  }
  const double n_dp = static_cast<double>(dims_.dp()), n_tp = static_cast<double>(dims_.tp());

  // Of this rank's shard; idle: expert weights a token does not use.
  int64_t n_params = 0, n_idle = 0;
  for (const auto& p : model_->parameters()) n_params += p.numel();
  for (const auto& layer : model_->moe_layers()) {
    for (const auto& p : layer->experts->parameters()) {
      n_idle += p.numel() * (config_.moe.num_experts - config_.moe.top_k) / config_.moe.num_experts;
    }
  }
  log_ << "model: " << n_params << " parameters, " << n_params - n_idle << " active per token; "
       << config_.model.n_layers << " layers, " << config_.moe.num_experts << " experts (top-"
       << config_.moe.top_k << ")\n";

  std::function<bool(const torch::Tensor&)> owned;
  if (config_.parallel.zero1) {
    owned = [&](const torch::Tensor& p) {
      for (const auto& set : param_sets_)
        if (set.zero->owns(p)) return true;
      return false;
    };
  }
  AdamW optimizer(make_param_groups(model_, config_.optim, owned, config_.finetune.router_lr), config_.optim);
  if (config_.parallel.zero1) {
    int64_t mine = 0, all = 0;
    for (const auto& g : optimizer.groups())
      for (const auto& p : g.params) mine += p.numel();
    for (const auto& p : model_->parameters()) all += p.numel();
    log_ << "ZeRO-1: rank 0 keeps optimizer state for " << mine << " of its " << all
         << " parameters\n";
  }
  auto moe_layers = model_->moe_layers();

  // --- checkpoints -------------------------------------------------------------
  // This rank's boxes of every global tensor: parameters, buffers, optimizer
  // state; `optimizer_steps` receives the per-parameter step counts on load.
  std::vector<std::tuple<size_t, size_t, torch::Tensor>> optimizer_steps;
  // base_weights: only the weights a base checkpoint holds (every parameter
  // but the adapters), for finetune.base.
  auto checkpoint_entries = [&](bool base_weights = false) {
    std::vector<CheckpointEntry> out;
    std::map<std::string, std::pair<int64_t, int64_t>> tp_split;  // name -> (dim, start)
    if (dims_.tp() > 1) {
      for (const auto& item : model_->named_modules("", /*include_self=*/false)) {
        if (const auto* l = dynamic_cast<const ParallelLinearImpl*>(item.value().get())) {
          tp_split[item.key() + ".weight"] = {l->split_dim(), l->split_start()};
          if (l->bias.defined()) tp_split[item.key() + ".bias"] = {0, l->split_start()};
          if (l->lora_A.defined()) {
            // The adapter's factor that is split, along the weight's split.
            const auto split = l->lora_split_name();
            tp_split[item.key() + "." + split] = {split == "lora_B" ? 0 : 1, l->split_start()};
          }
        } else if (const auto* e = dynamic_cast<const VocabParallelEmbeddingImpl*>(item.value().get())) {
          tp_split[item.key() + ".weight"] = {0, e->vocab_start()};
        }
      }
    }
    struct Box {
      std::vector<int64_t> start, global;
      bool write;
    };
    auto box_of = [&](const std::string& name, const torch::Tensor& t) {
      Box b{std::vector<int64_t>(static_cast<size_t>(t.dim()), 0), t.sizes().vec(), groups_.world->rank() == 0};
      if (name.find(".experts.") != std::string::npos) {
        b.start[0] = groups_.ep_index * t.size(0);
        b.global[0] = t.size(0) * dims_.ep();
        b.write = groups_.expert_dp->rank() == 0;
      } else if (const auto it = tp_split.find(name); it != tp_split.end()) {
        const auto [dim, start] = it->second;
        b.start[static_cast<size_t>(dim)] = start;
        b.global[static_cast<size_t>(dim)] = t.size(dim) * dims_.tp();
        b.write = groups_.dp_index == 0;
      }
      return b;
    };
    std::map<const void*, std::string> name_of;
    for (const auto& item : model_->named_parameters()) {
      name_of[item.value().unsafeGetTensorImpl()] = item.key();
      if (base_weights) {
        if (item.key().find("lora_") != std::string::npos) continue;
      } else if (!config_.finetune.base.empty() && !item.value().requires_grad()) {
        continue;  // a frozen weight is the base checkpoint's, loaded from there
      }
      const auto b = box_of(item.key(), item.value());
      out.push_back({"model/" + item.key(), item.value(), b.start, b.global, b.write});
    }
    if (base_weights) return out;
    for (const auto& item : model_->named_buffers()) {
      out.push_back({"buffer/" + item.key(), item.value(), std::vector<int64_t>(static_cast<size_t>(item.value().dim()), 0),
                     item.value().sizes().vec(), groups_.world->rank() == 0});
    }
    optimizer_steps.clear();
    for (size_t g = 0; g < optimizer.groups().size(); ++g) {
      for (size_t i = 0; i < optimizer.groups()[g].params.size(); ++i) {
        const auto& p = optimizer.groups()[g].params[i];
        const std::string name = name_of.at(p.unsafeGetTensorImpl());
        auto b = box_of(name, p);
        if (config_.parallel.zero1) b.write = true;  // its owner alone holds it
        const auto& st = optimizer.state(g, i);
        const std::string base = "optim/" + name;
        out.push_back({base + "/exp_avg", st.exp_avg, b.start, b.global, b.write});
        out.push_back({base + "/exp_avg_sq", st.exp_avg_sq, b.start, b.global, b.write});
        if (st.master.defined()) out.push_back({base + "/master", st.master, b.start, b.global, b.write});
        auto step = torch::tensor(st.step, torch::kLong);
        optimizer_steps.emplace_back(g, i, step);
        // One count per parameter (every box of it takes the same steps):
        // written with the box at the origin.
        const bool origin = std::all_of(b.start.begin(), b.start.end(), [](int64_t s) { return s == 0; });
        out.push_back({base + "/step", step, {}, {}, b.write && origin});
      }
    }
    return out;
  };
  int64_t bad_in_a_row = 0, first_step = 0;
  auto rank_state = [&](int64_t steps_done) {
    std::map<std::string, std::string> s = {
        {"step", std::to_string(steps_done)},
        {"bad_in_a_row", std::to_string(bad_in_a_row)},
        {"skipped_steps", std::to_string(summary.skipped_steps)},
        {"optimizer_steps", std::to_string(optimizer.steps_taken())},
        {"torch_rng", to_hex(at::detail::getDefaultCPUGenerator().get_state())}};
    if (dataset) s["source"] = dataset->loader().state().to_string();
    if (text_source) s["source"] = text_source->state();
    return s;
  };
  // Whether `error` is set on any rank: every rank takes the same branch.
  auto any_rank_failed = [&](const std::string& error) {
    auto failed = torch::tensor({error.empty() ? 0.0 : 1.0}, torch::kDouble);
    if (dims_.world() > 1) groups_.world->all_reduce(failed, ReduceOp::kMax);
    return failed.item<double>() > 0;
  };
  // After loading weights only: the fp32 master copies follow the parameters.
  auto masters_follow_parameters = [&] {
    torch::NoGradGuard no_grad;
    for (size_t g = 0; g < optimizer.groups().size(); ++g)
      for (size_t i = 0; i < optimizer.groups()[g].params.size(); ++i) {
        const auto& st = optimizer.state(g, i);
        if (st.master.defined()) st.master.copy_(optimizer.groups()[g].params[i]);
      }
  };
  // Fine-tuning: the base checkpoint's weights (any layout) first; a
  // checkpoint of this run, if any, then replaces what it holds.
  if (!config_.finetune.base.empty()) {
    // Every base weight, whether it trains or not; adapters are new.
    auto base_entries = checkpoint_entries(/*base_weights=*/true);
    std::string error;
    const auto load_start = Clock::now();
    try {
      load_checkpoint(config_.finetune.base, base_entries, groups_.world->rank(), static_cast<int>(dims_.world()));
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (any_rank_failed(error)) {
      throw std::runtime_error("cannot load finetune.base=" + config_.finetune.base + ": " +
                               (error.empty() ? "another rank could not load its part" : error));
    }
    masters_follow_parameters();
    log_ << "fine-tuning from " << config_.finetune.base << " (weights; rank 0 loaded in " << seconds_since(load_start)
         << " s)\n";
  }
  // Which checkpoint to resume from: candidates newest first.
  std::vector<std::string> candidates;
  if (train.resume == "auto" || train.resume == "latest") {
    auto committed = committed_checkpoints(train.run_dir);
    candidates.assign(committed.rbegin(), committed.rend());
    if (candidates.empty() && train.resume == "latest") {
      throw std::runtime_error("--resume latest: no committed checkpoint in " + train.run_dir +
                               "/checkpoints; train without --resume to start the run");
    }
  } else if (train.resume != "none") {
    candidates.push_back(train.resume);
  }
  for (size_t k = 0; k < candidates.size(); ++k) {
    std::string error;
    std::map<std::string, std::string> state;
    auto entries = checkpoint_entries();
    bool weights_only = false;
    const auto load_start = Clock::now();
    try {
      // A checkpoint without optimizer state (moxie import): weights only,
      // the optimizer starts fresh.
      const auto index = read_checkpoint_index(candidates[k]);
      weights_only = std::none_of(index.tensors.begin(), index.tensors.end(),
                                  [](const CheckpointTensor& t) { return t.name.rfind("optim/", 0) == 0; });
      if (weights_only) {
        entries.erase(std::remove_if(entries.begin(), entries.end(),
                                     [](const CheckpointEntry& e) { return e.name.rfind("optim/", 0) == 0; }),
                      entries.end());
        optimizer_steps.clear();
      }
      state = load_checkpoint(candidates[k], entries, groups_.world->rank(), static_cast<int>(dims_.world()));
    } catch (const std::exception& e) {
      error = e.what();
    }
    // Every rank loads the same checkpoint or none.
    if (any_rank_failed(error)) {
      const std::string why = error.empty() ? "another rank could not load its part" : error;
      if (candidates.size() == 1 || k + 1 == candidates.size()) {
        throw std::runtime_error("cannot resume from " + candidates[k] + ": " + why);
      }
      log_ << "checkpoint " << candidates[k] << " cannot be loaded (" << why
           << "); falling back to the previous committed checkpoint\n";
      continue;
    }
    for (const auto& [g, i, step] : optimizer_steps) optimizer.set_step(g, i, step.item<int64_t>());
    auto number = [&](const char* key) { return state.count(key) ? std::stoll(state.at(key)) : 0; };
    first_step = number("step");
    bad_in_a_row = number("bad_in_a_row");
    summary.skipped_steps = number("skipped_steps");
    optimizer.set_steps_taken(number("optimizer_steps"));
    if (weights_only) {
      masters_follow_parameters();
      log_ << "weights-only checkpoint: the optimizer starts fresh\n";
    }
    if (state.count("torch_rng")) {
      auto generator = at::detail::getDefaultCPUGenerator();
      generator.set_state(from_hex(state.at("torch_rng")));
    }
    if (!state.count("source")) {
      // Nothing to restore: the data starts from the beginning.
    } else if (dataset) {
      const auto resume_state = LoaderState::parse(state.at("source"));
      auto owned = std::make_unique<DatasetSource>(dataset_options, &resume_state);
      dataset = owned.get();
      source = std::move(owned);
    }
    if (text_source && state.count("source")) text_source->restore(state.at("source"));
    log_ << "resumed from " << candidates[k] << " at step " << first_step << " (rank 0 loaded in "
         << seconds_since(load_start) << " s)\n";
    break;
  }
  if (train.checkpoint_every > 0) {
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGINT, on_stop_signal);
  }
  CheckpointWriter writer(train.run_dir, groups_.world->rank());
  // Waits for the write in flight on every rank; rank 0 then commits it.
  auto commit_pending = [&] {
    const int64_t step = writer.pending();
    if (step < 0) return;
    const std::string error = writer.finish();
    if (any_rank_failed(error)) {
      throw std::runtime_error("saving the checkpoint of step " + std::to_string(step) + " failed: " +
                               (error.empty() ? "on another rank" : error) +
                               "; every earlier committed checkpoint is intact");
    }
    if (rank0_) {
      commit_from_ranks(train.run_dir, step, static_cast<int>(dims_.world()), dims_.describe(),
                        static_cast<int>(train.keep_checkpoints));
    }
    log_ << "checkpoint of step " << step << " committed (" << checkpoint_dir(train.run_dir, step) << "): rank 0 wrote "
         << writer.bytes() << " bytes in " << writer.write_seconds() << " s in the background after a "
         << writer.copy_seconds() << " s copy\n";
  };
  auto save = [&](int64_t steps_done, bool background) {
    writer.start(steps_done, checkpoint_entries(), rank_state(steps_done), background);
  };

  MetricsLogger metrics(train.run_dir, train.log_every, log_, rank0_, /*append=*/first_step > 0);
  const auto poisoned_steps = injected_nonfinite_steps(groups_.world->rank());
  double best_eval = std::numeric_limits<double>::infinity();
  int64_t best_step = 0, since_best = 0, last_step = train.steps;

  auto evaluate = [&](int64_t step) {
    if (eval_batches.empty()) return;
    torch::NoGradGuard no_grad;
    // Sums over masked targets, so that the means are over the whole eval
    // set: all text, then the text of samples with an image, with audio,
    // each with the media present and blanked.
    auto sums = torch::zeros({8}, torch::kDouble);
    for (const auto& host : eval_batches) {
      const auto b = host.to(device_);
      auto out = model_->forward_inputs(inputs_of(b));
      const double n = host.loss_mask.sum().item<double>();
      sums[0] += model_->cross_entropy(out.logits, b.targets, b.loss_mask).item<double>() * n;
      sums[1] += n;
      torch::Tensor blank_logits;
      const torch::Tensor* slots[2] = {&host.patch_slot, &host.frame_slot};
      for (int k = 0; k < 2; ++k) {
        const auto mask_host = media_loss_mask(host, *slots[k]);
        const double m = mask_host.sum().item<double>();
        if (m == 0) continue;
        const auto mask = mask_host.to(device_);
        if (!blank_logits.defined()) blank_logits = model_->forward_inputs(inputs_of(b, /*blank_media=*/true)).logits;
        sums[2 + 3 * k] += model_->cross_entropy(out.logits, b.targets, mask).item<double>() * m;
        sums[3 + 3 * k] += model_->cross_entropy(blank_logits, b.targets, mask).item<double>() * m;
        sums[4 + 3 * k] += m;
      }
    }
    groups_.dp->all_reduce(sums, ReduceOp::kSum);
    const double loss = sums[0].item<double>() / std::max(1.0, sums[1].item<double>());
    summary.eval_losses.emplace_back(step, loss);
    metrics.eval(step, loss);
    const char* what[2] = {"an image", "audio"};
    for (int k = 0; k < 2; ++k) {
      const double m = sums[4 + 3 * k].item<double>();
      if (m == 0) continue;
      const double with = sums[2 + 3 * k].item<double>() / m, blanked = sums[3 + 3 * k].item<double>() / m;
      (k == 0 ? summary.eval_image_loss : summary.eval_audio_loss) = {with, blanked};
      metrics.message("eval step " + std::to_string(step) + ": text of samples with " + what[k] + " " +
                      std::to_string(with) + " nats/token; with it blanked " + std::to_string(blanked) +
                      " nats/token");
    }
  };

  bool stopped = false;
  for (int64_t step = first_step; step < train.steps; ++step) {
    const auto t0 = Clock::now();
    const double lr = lr_at(config_.optim, config_.schedule, step, train.steps);
    double balance_sum = 0;
    int64_t tokens = 0, assignments = 0, dropped = 0;
    std::vector<torch::Tensor> load_LE(moe_layers.size());

    LoaderState stream_before;
    std::vector<uint64_t> skipped_ids;
    std::vector<Batch> micro_batches;
    double local_targets = 0;
    for (int64_t micro = 0; micro < train.grad_accum; ++micro) {
      micro_batches.push_back(source->next());
      local_targets += micro_batches.back().loss_mask.sum().item<double>();
      if (dataset) {
        if (micro == 0) stream_before = dataset->last().before;
        const auto& skipped = dataset->last().skipped_ids;
        skipped_ids.insert(skipped_ids.end(), skipped.begin(), skipped.end());
      }
    }
    // The loss is the mean over the global batch's counted targets, however
    // they fall on replicas and micro-batches (packed rows count different
    // numbers): each micro-batch's sum over the global count, times dp
    // because the gradient sync averages over the replicas.
    auto count = torch::tensor({local_targets}, torch::kDouble);
    if (dims_.dp() > 1) groups_.dp->all_reduce(count, ReduceOp::kSum);
    const double global_targets = std::max(1.0, count.item<double>());
    // Per-step sums stay on the device until the step's end: one host sync
    // for the metrics instead of one per micro-batch and layer.
    const auto on = torch::TensorOptions().dtype(torch::kDouble).device(device_);
    auto loss_sum_t = torch::zeros({}, on), aux_sum_t = torch::zeros({}, on), balance_sum_t = torch::zeros({}, on);
    for (int64_t micro = 0; micro < train.grad_accum; ++micro) {
      const auto& host_batch = micro_batches[static_cast<size_t>(micro)];
      const double targets = host_batch.loss_mask.sum().item<double>();
      const auto batch = host_batch.to(device_);
      auto out = model_->forward_inputs(inputs_of(batch));
      auto ce = model_->cross_entropy(out.logits, batch.targets, batch.loss_mask);
      auto loss = ce * (targets * n_dp / global_targets) + out.aux_loss / static_cast<double>(train.grad_accum);
      if (poisoned_steps.count(step + 1)) {
        ce = ce * std::numeric_limits<double>::quiet_NaN();
        loss = loss * std::numeric_limits<double>::quiet_NaN();
      }
      if (overlap_ && micro + 1 == train.grad_accum) {
        for (auto& set : param_sets_) set.sync->arm();
      }
      loss.backward();
      loss_sum_t += ce.detach().to(torch::kDouble) * targets;
      aux_sum_t += out.aux_loss.detach().to(torch::kDouble);
      tokens += batch.num_tokens();
      for (size_t l = 0; l < out.moe_stats.size(); ++l) {
        const auto& s = out.moe_stats[l];
        load_LE[l] = load_LE[l].defined() ? load_LE[l] + s.tokens_per_expert_E
                                          : s.tokens_per_expert_E.clone();
        balance_sum_t += s.balance_loss.to(torch::kDouble);
        assignments += s.assignments;
        dropped += s.dropped;
      }
    }

    StepMetrics m;
    m.step = step + 1;
    m.total_steps = train.steps;
    // Over the global batch, in one all-reduce: the cross-entropy is equal on
    // a replica's TP ranks, the aux loss is split into TP shares, the
    // balance and drop counts are per rank.
    auto sums = torch::cat({torch::stack({loss_sum_t, aux_sum_t, balance_sum_t}).cpu(),
                            torch::tensor({static_cast<double>(dropped), static_cast<double>(assignments)},
                                          torch::kDouble)});
    groups_.dp_tp->all_reduce(sums, ReduceOp::kSum);
    m.loss = sums[0].item<double>() / (n_tp * global_targets);
    m.aux_loss = sums[1].item<double>() / (n_dp * train.grad_accum);
    balance_sum = sums[2].item<double>() / (n_dp * n_tp);
    dropped = static_cast<int64_t>(sums[3].item<double>());
    assignments = static_cast<int64_t>(sums[4].item<double>());
    m.lr = lr;
    for (auto& load : load_LE) groups_.dp_tp->all_reduce(load, ReduceOp::kSum);
    m.grad_norm = sync_and_clip();
    if (overlap_ && step == 0) {
      int64_t early = 0, buckets = 0;
      for (const auto& set : param_sets_) {
        early += set.sync->started_in_backward();
        buckets += set.sync->num_buckets();
      }
      log_ << "gradient sync: " << early << " of " << buckets
           << " buckets started during the backward pass\n";
    }
    m.skipped = !std::isfinite(m.loss) || !std::isfinite(m.grad_norm);
    if (m.skipped) {
      ++summary.skipped_steps;
      metrics.message("step " + std::to_string(step + 1) + " skipped: its loss or gradient is not finite (" +
                      std::to_string(bad_in_a_row + 1) + " in a row, train.max_nonfinite_steps=" +
                      std::to_string(train.max_nonfinite_steps) + ")");
      if (++bad_in_a_row >= train.max_nonfinite_steps) {
        throw std::runtime_error("training diverged: " + std::to_string(bad_in_a_row) +
                                 " steps in a row had a non-finite loss or gradient (step " +
                                 std::to_string(step + 1) + "); resume from the last checkpoint with a lower "
                                 "optim.lr or a tighter optim.grad_clip (train.max_nonfinite_steps sets the limit)");
      }
    } else {
      bad_in_a_row = 0;
      optimizer.step(lr);
      if (config_.parallel.zero1) {
        for (auto& set : param_sets_) set.zero->broadcast_updates();
      }
      for (size_t l = 0; l < moe_layers.size(); ++l) moe_layers[l]->gate->update_bias(load_LE[l]);
    }
    model_->zero_grad();  // every parameter's, not only those this rank's optimizer updates

    if (!moe_layers.empty()) {
      double lo = 1, hi = 0;
      for (const auto& load : load_LE) {
        auto share = load.to(torch::kDouble) / load.sum().item<double>();
        lo = std::min(lo, share.min().item<double>());
        hi = std::max(hi, share.max().item<double>());
      }
      m.load_min = lo;
      m.load_max = hi;
      m.balance = balance_sum / static_cast<double>(moe_layers.size() * train.grad_accum);
      m.dropped_frac = static_cast<double>(dropped) / static_cast<double>(assignments);
    }
    m.step_time_s = seconds_since(t0);
    // The global batch: every data-parallel replica consumed as many tokens.
    m.tokens_per_s = static_cast<double>(tokens * dims_.dp()) / m.step_time_s;
    summary.train_losses.push_back(m.loss);
    metrics.step(m);
    if (provenance) provenance->step(step + 1, stream_before, dataset->last().after, skipped_ids);

    bool early_stop = false;
    if (train.eval_every > 0 && (step + 1) % train.eval_every == 0 && step + 1 < train.steps) {
      evaluate(step + 1);
      // Early stopping on the eval loss (the same on every rank).
      if (config_.finetune.early_stop_patience > 0 && !summary.eval_losses.empty()) {
        const double loss = summary.eval_losses.back().second;
        if (loss < best_eval) {
          best_eval = loss;
          best_step = step + 1;
          since_best = 0;
        } else {
          early_stop = ++since_best >= config_.finetune.early_stop_patience;
        }
      }
    }
    if (train.checkpoint_every > 0) {
      // A save in flight is committed once every rank's write has ended (it
      // runs behind training, at low priority); a new save waits for it.
      if (writer.pending() >= 0) {
        auto written = torch::tensor({writer.written() ? 0.0 : 1.0}, torch::kDouble);
        if (dims_.world() > 1) groups_.world->all_reduce(written, ReduceOp::kMax);
        if (written.item<double>() == 0) commit_pending();
      }
      auto signal = torch::tensor({static_cast<double>(g_stop_signal.load())}, torch::kDouble);
      if (dims_.world() > 1) groups_.world->all_reduce(signal, ReduceOp::kMax);
      const bool stop = signal.item<double>() > 0 || step + 1 == train.stop_at;
      if ((step + 1) % train.checkpoint_every == 0 || step + 1 == train.steps || stop || early_stop) {
        commit_pending();  // the previous save, if its write is still running
        save(step + 1, /*background=*/!stop && step + 1 < train.steps);
      }
      if (stop) {
        commit_pending();
        metrics.message(std::string(step + 1 == train.stop_at ? "stopped at train.stop_at" : "stopped by a signal") +
                        " after step " + std::to_string(step + 1) +
                        "; resume with: moxie train CONFIG --resume latest");
        stopped = true;
        break;
      }
    }
    if (early_stop) {
      commit_pending();
      metrics.message("stopped early after step " + std::to_string(step + 1) + ": the eval loss has not improved for " +
                      std::to_string(since_best) + " evaluations (best " + std::to_string(best_eval) + " at step " +
                      std::to_string(best_step) + "; finetune.early_stop_patience)");
      last_step = step + 1;
      break;
    }
  }
  commit_pending();
  if (stopped) return summary;
  if (first_step >= train.steps) {
    metrics.message("the run was already complete at step " + std::to_string(first_step) + "; nothing to train");
  }
  evaluate(last_step);
  if (dataset) summary.skipped_samples = dataset->loader().skipped();
  if (summary.eval_losses.empty()) {
    metrics.message("done: " + std::to_string(summary.skipped_steps) + " steps skipped, " +
                    std::to_string(summary.skipped_samples) + " damaged samples skipped; no evaluation");
  } else if (dataset) {
    metrics.message("done: eval loss " + std::to_string(summary.eval_losses.back().second) +
                    " nats/token (" + std::to_string(summary.skipped_steps) + " steps skipped, " +
                    std::to_string(summary.skipped_samples) + " damaged samples skipped)");
  } else {
    metrics.message("done: eval loss " + std::to_string(summary.eval_losses.back().second) +
                    " nats/token vs unigram entropy " + std::to_string(summary.unigram_entropy_nats) +
                    " nats/token (" + std::to_string(summary.skipped_steps) + " steps skipped)");
  }
  return summary;
}

}  // namespace moxie
