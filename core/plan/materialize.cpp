// One rank's shard, built and run piece by piece.
#include "core/plan/materialize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "core/model/layers.h"
#include "core/model/transformer.h"
#include "optim/adamw.h"
#include "parallel/differentiable.h"
#include "parallel/simulated_communicator.h"

namespace moxie {
namespace {

double peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;
  }
  return 0;
}

std::string gb(double bytes) {
  char buf[32];
  if (bytes >= 1e9)
    std::snprintf(buf, sizeof(buf), "%.3f GB", bytes / 1e9);
  else
    std::snprintf(buf, sizeof(buf), "%.3f MB", bytes / 1e6);
  return buf;
}

}  // namespace

MaterializeReport materialize_rank(const Config& c, const PlanOptions& o, std::ostream& log) {
  const ParallelDims dims = layout_of(c, o.world);
  const int64_t R = o.rank;
  if (R < 0 || R >= o.world) {
    throw std::invalid_argument("--materialize-rank " + std::to_string(R) + " is not a rank of a " +
                                std::to_string(o.world) + "-rank job");
  }
  const auto dtype = o.param_bytes == 2 ? torch::kBFloat16 : torch::kFloat;
  std::map<std::string, ParamLayout> planned;
  for (const auto& q : plan_rank_parameters(c, dims, R)) planned[q.name] = q;
  const auto here = coordinates_of(dims, R);

  // This rank's place in each group; its peers are simulated.
  SimulatedCommunicator tp(static_cast<int>(R % dims.tp()), static_cast<int>(dims.tp()));
  SimulatedCommunicator ep(static_cast<int>(R % dims.ep()), static_cast<int>(dims.ep()));
  SimulatedCommunicator dp_tp(static_cast<int>(R), static_cast<int>(dims.dp() * dims.tp()));
  ModelParallel parallel;
  if (dims.ep() > 1) parallel.ep = &ep;
  parallel.batch = &dp_tp;
  if (dims.tp() > 1) parallel.tp.group = &tp;

  // A small batch: 16 positions per TP rank of one sequence.
  const int64_t S = 16 * dims.tp(), S_local = 16, D = c.model.d_model;
  torch::manual_seed(static_cast<uint64_t>(c.train.seed));
  auto tokens = torch::randint(0, c.model.vocab_size, {1, S}, torch::kLong);

  MaterializeReport report;
  std::size_t seen = 0;
  // What one parameter of a built block measured, by its name in the block:
  // the same-named parameter of an unbuilt block of that kind is counted so.
  struct Measured {
    int64_t numel = 0;
    double param_bytes = 0, grad_bytes = 0, state_bytes = 0;
  };
  using BlockMeasure = std::map<std::string, Measured>;
  // Measures a built piece after its backward, and steps its optimizer. With
  // `record`, every parameter is stepped (so that each one's state bytes are
  // measured) but only those whose state this rank keeps are counted.
  auto account = [&](torch::nn::Module& piece, const std::string& prefix,
                     BlockMeasure* record = nullptr) {
    std::vector<torch::Tensor> stepped;
    std::vector<std::string> stepped_keys;
    std::vector<bool> stepped_owned;
    for (const auto& item : piece.named_parameters()) {
      const auto& p = item.value();
      const std::string name = prefix + item.key();
      auto it = planned.find(name);
      if (it == planned.end() || it->second.numel() != p.numel()) {
        ++report.shape_mismatches;
        log << "  mismatch: " << name << " has " << p.numel() << " elements; the plan has "
            << (it == planned.end() ? std::string("no such parameter")
                                    : std::to_string(it->second.numel()))
            << "\n";
        continue;
      }
      ++seen;
      const double grad_bytes = p.grad().defined() ? static_cast<double>(p.grad().nbytes()) : 0;
      report.params += p.numel();
      report.param_bytes += static_cast<double>(p.nbytes());
      report.grad_bytes += grad_bytes;
      if (record)
        (*record)[item.key()] = {p.numel(), static_cast<double>(p.nbytes()), grad_bytes, 0};
      const bool owned = keeps_optimizer_state(it->second, here);
      if (owned || record) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        stepped.push_back(p);
        stepped_keys.push_back(item.key());
        stepped_owned.push_back(owned);
      }
    }
    if (stepped.empty()) return;
    AdamW adam({ParamGroup{"stepped", stepped, c.optim.weight_decay, 1.0}}, c.optim);
    adam.step(c.optim.lr);
    for (size_t i = 0; i < stepped.size(); ++i) {
      const auto& s = adam.state(0, i);
      double bytes = 0;
      for (const auto* t : {&s.exp_avg, &s.exp_avg_sq, &s.master}) {
        if (t->defined()) bytes += static_cast<double>(t->nbytes());
      }
      if (stepped_owned[i]) report.optimizer_bytes += bytes;
      if (record) (*record)[stepped_keys[i]].state_bytes = bytes;
    }
  };
  // An unbuilt block, counted from a built one of its kind: every parameter
  // the plan lists for it must be one the built block has, of the same size.
  auto account_unbuilt = [&](const BlockMeasure& built, const std::string& prefix) {
    for (const auto& [key, m] : built) {
      const std::string name = prefix + key;
      auto it = planned.find(name);
      if (it == planned.end() || it->second.numel() != m.numel) {
        ++report.shape_mismatches;
        log << "  mismatch: " << name << " (as built in a block of its kind) has " << m.numel
            << " elements; the plan has "
            << (it == planned.end() ? std::string("no such parameter")
                                    : std::to_string(it->second.numel()))
            << "\n";
        continue;
      }
      ++seen;
      report.params += m.numel;
      report.param_bytes += m.param_bytes;
      report.grad_bytes += m.grad_bytes;
      if (keeps_optimizer_state(it->second, here)) report.optimizer_bytes += m.state_bytes;
    }
  };
  auto hidden = [&] { return (torch::randn({1, S_local, D}) * 0.5).to(dtype).requires_grad_(); };

  const auto t0 = std::chrono::steady_clock::now();
  log << "materializing rank " << R << " of " << dims.describe() << ", piece by piece, "
      << (dtype == torch::kBFloat16 ? "bf16" : "fp32") << ", batch 1 x " << S << " tokens\n";
  {
    VocabParallelEmbedding embed(c.model.vocab_size, D, parallel.tp, c.model.init_std);
    embed->to(dtype);
    auto x = embed(tokens);
    if (dims.tp() > 1) x = reduce_scatter_along(tp, x, 1);
    x.to(torch::kFloat).square().mean().backward();
    account(*embed, "model.embed_tokens.");
  }
  const int64_t L = c.model.n_layers;
  const int64_t built = o.materialize_blocks < 0 ? L : std::min(o.materialize_blocks, L);
  // The last built block of each kind (false: dense, true: MoE) stands for the
  // unbuilt blocks of that kind.
  std::map<bool, int64_t> last_built;
  for (int64_t i = 0; i < built; ++i) last_built[is_moe_layer(c.model, i)] = i;
  for (int64_t i = built; i < L; ++i) {
    if (!last_built.count(is_moe_layer(c.model, i))) {
      throw std::invalid_argument("--materialize-blocks " + std::to_string(built) + " builds no " +
                                  (is_moe_layer(c.model, i) ? "MoE" : "dense") +
                                  " block, but block " + std::to_string(i) +
                                  " is one; build at least " + std::to_string(i + 1) + " blocks");
    }
  }
  std::map<bool, BlockMeasure> measured_kind;
  for (int64_t i = 0; i < built; ++i) {
    const bool moe = is_moe_layer(c.model, i);
    const bool stands_for_others = built < L && last_built[moe] == i;
    Block block(c.model, c.moe, moe, parallel);
    block->to(dtype);
    auto out = block(hidden());
    auto loss = out.x.to(torch::kFloat).square().mean();
    if (out.aux_loss.defined()) loss = loss + out.aux_loss.to(torch::kFloat);
    loss.backward();
    account(*block, "model.layers." + std::to_string(i) + ".",
            stands_for_others ? &measured_kind[moe] : nullptr);
    if ((i + 1) % 10 == 0 || i + 1 == built) {
      log << "  " << i + 1 << " of " << L << " blocks built, peak resident "
          << gb(peak_resident_bytes()) << std::endl;
    }
  }
  for (int64_t i = built; i < L; ++i) {
    account_unbuilt(measured_kind[is_moe_layer(c.model, i)],
                    "model.layers." + std::to_string(i) + ".");
  }
  if (built < L) {
    log << "  blocks " << built << " to " << L - 1 << " checked against the plan by name and size "
        << "and counted as built block";
    for (const auto& [moe, i] : last_built) log << " " << i << (moe ? " (MoE)" : " (dense)");
    log << "\n";
  }

  {
    RMSNorm norm(D, c.model.norm_eps);
    norm->to(dtype);
    auto x = norm(hidden());
    if (dims.tp() > 1) x = all_gather_along(tp, x, 1);
    torch::Tensor head_weight;
    ParallelLinear head{nullptr};
    if (c.model.tie_embeddings) {
      // The tied head is the embedding, already counted: a stand-in of its shape.
      head_weight = torch::zeros({c.model.vocab_size / dims.tp(), D}, dtype);
    } else {
      head = ParallelLinear(D, c.model.vocab_size, Split::kColumn, parallel.tp, c.model.init_std);
      head->to(dtype);
      head_weight = head->weight;
    }
    auto logits = linear_product(x, head_weight).reshape({S, -1});
    auto targets = tokens.reshape({S});
    auto ce = dims.tp() > 1 ? vocab_parallel_cross_entropy(tp, logits, targets,
                                                           (R % dims.tp()) * logits.size(1))
                            : masked_cross_entropy(logits, targets, torch::ones({S}));
    ce.mean().backward();
    account(*norm, "model.norm.");
    if (head) account(*head, "lm_head.");
  }
  if (seen != planned.size()) {
    report.shape_mismatches += static_cast<int64_t>(planned.size() - seen);
    log << "  the plan lists " << planned.size() << " parameters; " << seen << " were built\n";
  }
  report.peak_resident_bytes = peak_resident_bytes();
  report.alltoall_bytes = static_cast<double>(ep.bytes_sent());
  report.blocks_built = built;
  log << "built and ran in "
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  return report;
}

std::string compare_with_plan(const Plan& plan, const MaterializeReport& m) {
  std::ostringstream s;
  char line[160];
  auto row = [&](const char* what, double planned, double measured) {
    std::snprintf(line, sizeof(line), "  %-16s %12s %12s %+8.2f%%\n", what, gb(planned).c_str(),
                  gb(measured).c_str(), 100.0 * (measured - planned) / planned);
    s << line;
  };
  std::snprintf(line, sizeof(line), "  %-16s %12s %12s %9s\n", "", "planned", "measured", "diff");
  s << "measured against the plan:\n" << line;
  row("parameters", plan.rank_param_bytes, m.param_bytes);
  row("gradients", plan.rank_grad_bytes, m.grad_bytes);
  row("optimizer state", plan.rank_optimizer_bytes, m.optimizer_bytes);
  s << "  parameter elements: planned " << plan.rank_params << ", built " << m.params
    << (m.shape_mismatches ? ", " + std::to_string(m.shape_mismatches) + " MISMATCHED" : "") << "\n"
    << "  peak resident memory " << gb(m.peak_resident_bytes) << " (the whole shard's parameters, "
    << "gradients and optimizer state: " << gb(m.param_bytes + m.grad_bytes + m.optimizer_bytes)
    << ")\n"
    << "  simulated all-to-all payload sent: " << m.alltoall_bytes / 1e6 << " MB for "
    << "this small batch through the " << m.blocks_built
    << " blocks built (activations are not measured here)\n";
  return s.str();
}

}  // namespace moxie
