// Generation: the sampling loop over CausalLM's cached or full forward.
#include "core/model/generate.h"

#include <algorithm>

namespace moxie {

std::vector<int64_t> generate(CausalLM& model, std::vector<int64_t> tokens,
                              const GenerateOptions& o) {
  torch::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t context = model->model_options().max_seq_len;
  // With capacity dropping a token's output depends on the other tokens of
  // its sequence: then every step recomputes the whole context.
  const bool cached = o.use_cache && model->moe_options().capacity_factor == 0;
  std::vector<KVCacheLayer> cache;
  for (int64_t i = 0; i < o.max_new; ++i) {
    const auto n = static_cast<int64_t>(tokens.size());
    torch::Tensor logits;
    if (cached && n <= context) {
      // The prompt once, then one token a step.
      const int64_t seen = cache.empty() ? 0 : cache.front().length();
      auto input =
          torch::tensor(std::vector<int64_t>(tokens.begin() + seen, tokens.end()), torch::kLong)
              .unsqueeze(0);
      logits = model->forward_cached(input, cache)[0][-1].to(torch::kDouble);
    } else {
      // Past max_seq_len the window slides, and every position moves.
      const int64_t from = std::max<int64_t>(0, n - context);
      auto input =
          torch::tensor(std::vector<int64_t>(tokens.begin() + from, tokens.end()), torch::kLong)
              .unsqueeze(0);
      logits = model->forward(input).logits[0][-1].to(torch::kDouble);
    }
    int64_t next;
    if (o.temperature <= 0) {
      next = logits.argmax().item<int64_t>();
    } else {
      auto probs = torch::softmax(logits / o.temperature, 0);
      if (o.top_p < 1.0) {
        auto [sorted, order] = probs.sort(0, /*descending=*/true);
        auto keep = (sorted.cumsum(0) - sorted) < o.top_p;  // the smallest set reaching top_p
        probs =
            torch::zeros_like(probs).index_put_({order}, sorted * keep.to(sorted.scalar_type()));
      }
      next = torch::multinomial(probs, 1, false, generator).item<int64_t>();
    }
    tokens.push_back(next);
    if (next == o.stop_token) break;
  }
  return tokens;
}

}  // namespace moxie
