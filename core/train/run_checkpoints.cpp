// Checkpoint boxes, resume and saves of a training run.
#include "core/train/run_checkpoints.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <ostream>
#include <stdexcept>

#include "core/common/file_io.h"

namespace moxie {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

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

// The saved RNG state: hex digits of exactly as many bytes as this build's
// generator state has; CheckpointError naming the checkpoint otherwise.
torch::Tensor rng_state_from_hex(const std::string& hex, int64_t bytes, const std::string& dir) {
  auto digit = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (hex.size() != static_cast<size_t>(bytes) * 2) {
    throw CheckpointError("checkpoint " + dir + ": its RNG state (torch_rng) has " +
                          std::to_string(hex.size()) + " hex digits, not the " +
                          std::to_string(bytes * 2) + " of this build's generator state");
  }
  auto t = torch::empty({bytes}, torch::kByte);
  auto* p = t.data_ptr<uint8_t>();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      throw CheckpointError("checkpoint " + dir + ": its RNG state (torch_rng) has '" +
                            excerpt(hex.substr(i, 2)) + "' at digit " + std::to_string(i) +
                            ", not hex");
    }
    p[i / 2] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return t;
}

// A counter of the saved state: a non-negative decimal integer.
int64_t state_number(const std::map<std::string, std::string>& state, const char* key,
                     const std::string& dir) {
  const auto it = state.find(key);
  if (it == state.end()) return 0;
  const std::string& v = it->second;
  const bool digits = !v.empty() && v.size() <= 18 &&
                      std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    throw CheckpointError("checkpoint " + dir + ": its state field '" + key + "' is '" +
                          excerpt(v) + "', not a non-negative integer");
  }
  return std::stoll(v);
}

}  // namespace

void check_resume_target(const TrainOptions& train) {
  if (train.resume == "latest" && committed_checkpoints(train.run_dir).empty()) {
    throw std::runtime_error("--resume latest: no committed checkpoint in " + train.run_dir +
                             "/checkpoints; train without --resume to start the run");
  }
  if (train.resume != "auto" && train.resume != "latest" && train.resume != "none" &&
      !std::filesystem::is_directory(train.resume)) {
    throw std::runtime_error(
        "checkpoint folder " + train.resume +
        " does not exist; name a folder under RUN/checkpoints, or use --resume latest");
  }
}

RunCheckpoints::RunCheckpoints(const Config& config, const ProcessGroups& groups, CausalLM& model,
                               const std::vector<ParamLayout>& layouts, AdamW& optimizer,
                               std::ostream& log)
    : config_(config),
      groups_(groups),
      model_(model),
      layouts_(layouts),
      optimizer_(optimizer),
      log_(log),
      writer_(config.train.run_dir, groups.world->rank()) {}

std::vector<CheckpointEntry> RunCheckpoints::entries(bool base_weights) {
  std::vector<CheckpointEntry> out;
  const bool rank0 = groups_.world->rank() == 0;
  std::map<const void*, size_t> index_of;
  const auto params = model_->named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& item = params[i];
    const auto& l = layouts_[i];
    index_of[item.value().unsafeGetTensorImpl()] = i;
    if (base_weights) {
      if (l.adapter) continue;
    } else if (!config_.finetune.base.empty() && !item.value().requires_grad()) {
      continue;  // a frozen weight is the base checkpoint's, loaded from there
    }
    out.push_back({"model/" + item.key(), item.value(), l.box_start, l.global_shape, l.writes_box});
  }
  if (base_weights) return out;
  for (const auto& item : model_->named_buffers()) {
    out.push_back({"buffer/" + item.key(), item.value(),
                   std::vector<int64_t>(static_cast<size_t>(item.value().dim()), 0),
                   item.value().sizes().vec(), rank0});
  }
  optimizer_steps_.clear();
  const auto& groups = optimizer_.groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params.size(); ++i) {
      const size_t k = index_of.at(groups[g].params[i].unsafeGetTensorImpl());
      const auto& l = layouts_[k];
      const bool write =
          config_.parallel.zero1 || l.writes_box;  // with ZeRO-1 its owner alone holds it
      const auto& st = optimizer_.state(g, i);
      const std::string base = "optim/" + params[k].key();
      out.push_back({base + "/exp_avg", st.exp_avg, l.box_start, l.global_shape, write});
      out.push_back({base + "/exp_avg_sq", st.exp_avg_sq, l.box_start, l.global_shape, write});
      if (st.master.defined())
        out.push_back({base + "/master", st.master, l.box_start, l.global_shape, write});
      auto step = torch::tensor(st.step, torch::kLong);
      optimizer_steps_.emplace_back(g, i, step);
      // One count per parameter (every box of it takes the same steps):
      // written with the box at the origin.
      const bool origin =
          std::all_of(l.box_start.begin(), l.box_start.end(), [](int64_t s) { return s == 0; });
      out.push_back({base + "/step", step, {}, {}, write && origin});
    }
  }
  return out;
}

std::map<std::string, std::string> RunCheckpoints::rank_state(const RunCounters& c,
                                                              const BatchSource& source) const {
  return {{"step", std::to_string(c.step)},
          {"bad_in_a_row", std::to_string(c.bad_in_a_row)},
          {"skipped_steps", std::to_string(c.skipped_steps)},
          {"optimizer_steps", std::to_string(optimizer_.steps_taken())},
          {"torch_rng", to_hex(at::detail::getDefaultCPUGenerator().get_state())},
          {"source", source.state()}};
}

bool RunCheckpoints::any_rank_failed(const std::string& error) const {
  auto failed = torch::tensor({error.empty() ? 0.0 : 1.0}, torch::kDouble);
  if (groups_.dims.world() > 1) groups_.world->all_reduce(failed, ReduceOp::kMax);
  return failed.item<double>() > 0;
}

void RunCheckpoints::masters_follow_parameters() {
  torch::NoGradGuard no_grad;
  const auto& groups = optimizer_.groups();
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i = 0; i < groups[g].params.size(); ++i) {
      const auto& st = optimizer_.state(g, i);
      if (st.master.defined()) st.master.copy_(groups[g].params[i]);
    }
}

void RunCheckpoints::load_base() {
  const auto& base = config_.finetune.base;
  if (base.empty()) return;
  // Every base weight, whether it trains or not; adapters are new.
  auto base_entries = entries(/*base_weights=*/true);
  std::string error;
  const auto load_start = Clock::now();
  try {
    load_checkpoint(base, base_entries, groups_.world->rank(),
                    static_cast<int>(groups_.dims.world()));
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (any_rank_failed(error)) {
    throw std::runtime_error("cannot load finetune.base=" + base + ": " +
                             (error.empty() ? "another rank could not load its part" : error));
  }
  masters_follow_parameters();
  log_ << "fine-tuning from " << base << " (weights; rank 0 loaded in " << seconds_since(load_start)
       << " s)\n";
}

RunCounters RunCheckpoints::resume(BatchSource& source) {
  const auto& train = config_.train;
  // Candidates newest first.
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
  RunCounters counters;
  for (size_t k = 0; k < candidates.size(); ++k) {
    std::string error;
    std::map<std::string, std::string> state;
    auto to_load = entries(/*base_weights=*/false);
    bool weights_only = false, old_format = false;
    std::map<std::string, int64_t> numbers;
    torch::Tensor rng;
    const auto load_start = Clock::now();
    try {
      // A checkpoint without optimizer state (moxie import): weights only,
      // the optimizer starts fresh.
      const auto index = read_checkpoint_index(candidates[k]);
      weights_only =
          std::none_of(index.tensors.begin(), index.tensors.end(),
                       [](const CheckpointTensor& t) { return t.name.rfind("optim/", 0) == 0; });
      if (weights_only) {
        to_load.erase(
            std::remove_if(to_load.begin(), to_load.end(),
                           [](const CheckpointEntry& e) { return e.name.rfind("optim/", 0) == 0; }),
            to_load.end());
        optimizer_steps_.clear();
      }
      state = load_checkpoint(candidates[k], to_load, groups_.world->rank(),
                              static_cast<int>(groups_.dims.world()));
      old_format = index.format_version < kCheckpointFormatVersion;
      // Every field checked before any is applied.
      for (const char* key : {"step", "bad_in_a_row", "skipped_steps", "optimizer_steps"})
        numbers[key] = state_number(state, key, candidates[k]);
      if (state.count("torch_rng")) {
        rng = rng_state_from_hex(state.at("torch_rng"),
                                 at::detail::getDefaultCPUGenerator().get_state().numel(),
                                 candidates[k]);
      }
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
           << "); skipping it and falling back to the previous committed checkpoint, "
           << candidates[k + 1] << "\n";
      continue;
    }
    for (const auto& [g, i, step] : optimizer_steps_)
      optimizer_.set_step(g, i, step.item<int64_t>());
    counters.step = numbers.at("step");
    counters.bad_in_a_row = numbers.at("bad_in_a_row");
    counters.skipped_steps = numbers.at("skipped_steps");
    optimizer_.set_steps_taken(numbers.at("optimizer_steps"));
    if (old_format) {
      log_ << "checkpoint " << candidates[k]
           << " has an index of format version 1 (written before rank-file headers were "
              "checksummed): its tensors' checksums were checked, its headers and state were not\n";
    }
    if (weights_only) {
      masters_follow_parameters();
      log_ << "weights-only checkpoint: the optimizer starts fresh\n";
    }
    if (rng.defined()) {
      auto generator = at::detail::getDefaultCPUGenerator();
      generator.set_state(rng);
    }
    // Without it (moxie import) the data starts from the beginning.
    if (state.count("source")) source.restore(state.at("source"));
    log_ << "resumed from " << candidates[k] << " at step " << counters.step
         << " (rank 0 loaded in " << seconds_since(load_start) << " s)\n";
    break;
  }
  return counters;
}

void RunCheckpoints::commit_pending() {
  const int64_t step = writer_.pending();
  if (step < 0) return;
  const std::string error = writer_.finish();
  if (any_rank_failed(error)) {
    throw std::runtime_error("saving the checkpoint of step " + std::to_string(step) +
                             " failed: " + (error.empty() ? "on another rank" : error) +
                             "; every earlier committed checkpoint is intact");
  }
  const auto& train = config_.train;
  if (groups_.world->rank() == 0) {
    commit_from_ranks(train.run_dir, step, static_cast<int>(groups_.dims.world()),
                      groups_.dims.describe(), static_cast<int>(train.keep_checkpoints));
  }
  log_ << "checkpoint of step " << step << " committed (" << checkpoint_dir(train.run_dir, step)
       << "): rank 0 wrote " << writer_.bytes() << " bytes in " << writer_.write_seconds()
       << " s in the background after a " << writer_.copy_seconds() << " s copy\n";
}

void RunCheckpoints::commit_if_written() {
  // A save in flight is committed once every rank's write has ended (it
  // runs behind training, at low priority); a new save waits for it.
  if (writer_.pending() < 0) return;
  auto written = torch::tensor({writer_.written() ? 0.0 : 1.0}, torch::kDouble);
  if (groups_.dims.world() > 1) groups_.world->all_reduce(written, ReduceOp::kMax);
  if (written.item<double>() == 0) commit_pending();
}

void RunCheckpoints::save(int64_t steps_done, const RunCounters& counters,
                          const BatchSource& source, bool background) {
  commit_pending();  // the previous save, if its write is still running
  writer_.start(steps_done, entries(/*base_weights=*/false), rank_state(counters, source),
                background);
}

}  // namespace moxie
