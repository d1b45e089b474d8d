// The first data source: byte tokens from a folder of real text, split into
// train and held-out documents, served as random windows (train) and a fixed
// set of evenly spaced windows (eval).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <random>
#include <vector>

#include "data/batch.h"
#include "data/options.h"

namespace moxie {

struct TextCorpus {
  std::vector<int32_t> train;  // documents as BOS + bytes + EOS, concatenated
  std::vector<int32_t> eval;
  int64_t train_documents = 0, eval_documents = 0;
  double unigram_entropy_nats = 0;  // of the train tokens: the best context-free loss
};

// Reads every file under options.path (recursively, or one file) whose
// extension is listed, in sorted path order; each file is one document.
// round(n * eval_fraction) of the n documents, at least one and at most
// n - 1, are held out for evaluation, evenly spread over that order (the
// middle document of each of that many equal blocks). Throws
// std::runtime_error naming the path and the fix when the path is missing,
// holds no matching file or fewer than two, or either half is shorter than
// one window of seq_len + 1 tokens.
TextCorpus load_text_corpus(const DataOptions& options);

// Entropy in nats of the token distribution of `tokens`.
double unigram_entropy(const std::vector<int32_t>& tokens);

// Windows of seq_len + 1 tokens at uniformly random offsets; the same seed
// gives the same batches on every platform (mt19937_64, no std distributions).
// Data parallelism: every rank draws the global batch of batch_size * dp_size
// windows and keeps rows [dp_rank * batch_size, (dp_rank + 1) * batch_size),
// so the union over ranks is the single-process batch.
class RandomWindowSource : public BatchSource {
 public:
  RandomWindowSource(std::shared_ptr<const std::vector<int32_t>> stream, int64_t batch_size,
                     int64_t seq_len, uint64_t seed, int64_t dp_rank = 0, int64_t dp_size = 1);
  Batch next() override;
  // The generator's state, for checkpoints (text, as std::mt19937_64 prints it).
  std::string state() const override;
  void restore(const std::string& state) override;

 private:
  std::shared_ptr<const std::vector<int32_t>> stream_;
  int64_t batch_size_, seq_len_, dp_rank_, dp_size_;
  std::mt19937_64 rng_;
};

// n_batches global batches of batch_size * dp_size non-overlapping windows
// spread evenly over the stream, the same on every call; this rank's rows of
// each. When the stream holds fewer windows than asked for, windows repeat
// (in order) rather than overlap.
std::vector<Batch> make_eval_batches(const std::vector<int32_t>& stream, int64_t batch_size,
                                     int64_t seq_len, int64_t n_batches, int64_t dp_rank = 0,
                                     int64_t dp_size = 1);

}  // namespace moxie
