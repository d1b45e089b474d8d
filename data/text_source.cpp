// Text corpus loading and batching: documents to byte tokens, a deterministic
// train/eval split by document, and windows of the token streams as batches.
#include "data/text_source.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "core/common/file_io.h"
#include "data/byte_tokenizer.h"

namespace moxie {
namespace fs = std::filesystem;
namespace {

std::vector<fs::path> list_files(const DataOptions& options) {
  const fs::path root(options.path);
  std::error_code ec;
  if (!fs::exists(root, ec)) {
    throw std::runtime_error("data.path '" + options.path +
                             "' does not exist; run launch/setup.sh (it links the demo corpus as "
                             ".data/text) or point data.path at a folder of text files");
  }
  auto wanted = [&](const fs::path& p) {
    return std::find(options.extensions.begin(), options.extensions.end(),
                     p.extension().string()) != options.extensions.end();
  };
  std::vector<fs::path> files;
  if (fs::is_regular_file(root)) {
    files.push_back(root);  // named explicitly: taken whatever its extension
  } else {
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      if (entry.is_regular_file() && wanted(entry.path())) files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::string exts;
    for (const auto& e : options.extensions) exts += (exts.empty() ? "" : ", ") + e;
    throw std::runtime_error("data.path '" + options.path + "' has no files with extension " +
                             exts + "; change data.extensions or data.path");
  }
  return files;
}

// One document; a FIFO or device under data.path is refused by name, and a
// file over 1 GiB before it is read.
std::string read_file(const fs::path& path) {
  try {
    return read_small_file(path.string(), "text file", uint64_t{1} << 30);
  } catch (const FileError& e) {
    throw std::runtime_error(std::string(e.what()) + "; remove it from data.path");
  }
}

// Which of n documents are held out: k = round(n * fraction), clamped to
// [1, n - 1], at the middle of k equal blocks of the sorted order, so the
// eval documents are spread over the whole corpus, not one corner of it.
std::vector<bool> held_out_documents(int64_t n, double fraction) {
  const int64_t k = std::clamp<int64_t>(std::llround(static_cast<double>(n) * fraction), 1, n - 1);
  std::vector<bool> held_out(static_cast<size_t>(n), false);
  for (int64_t j = 0; j < k; ++j) held_out[static_cast<size_t>((2 * j + 1) * n / (2 * k))] = true;
  return held_out;
}

Batch make_batch(const std::vector<int32_t>& stream, const std::vector<int64_t>& starts,
                 int64_t seq_len) {
  const int64_t B = static_cast<int64_t>(starts.size());
  auto window_BW = torch::empty({B, seq_len + 1}, torch::kLong);
  auto* w = window_BW.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    std::copy(stream.begin() + starts[b], stream.begin() + starts[b] + seq_len + 1,
              w + b * (seq_len + 1));
  }
  Batch batch;
  batch.tokens = window_BW.narrow(1, 0, seq_len).contiguous();
  batch.targets = window_BW.narrow(1, 1, seq_len).contiguous();
  batch.loss_mask = batch.targets.ne(ByteTokenizer::kPad).to(torch::kFloat);
  return batch;
}

void check_shape(const char* who, int64_t batch_size, int64_t seq_len, int64_t dp_rank,
                 int64_t dp_size) {
  if (batch_size < 1 || seq_len < 1 || dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size) {
    throw std::invalid_argument(std::string(who) + ": batch_size=" + std::to_string(batch_size) +
                                ", seq_len=" + std::to_string(seq_len) +
                                ", dp_rank=" + std::to_string(dp_rank) +
                                " of dp_size=" + std::to_string(dp_size) + " is not a valid shape");
  }
}

}  // namespace

double unigram_entropy(const std::vector<int32_t>& tokens) {
  std::vector<int64_t> counts(ByteTokenizer::kVocabSize, 0);
  for (auto t : tokens) counts.at(static_cast<size_t>(t))++;
  double h = 0;
  const double n = static_cast<double>(tokens.size());
  for (auto c : counts) {
    if (c > 0) h -= c / n * std::log(c / n);
  }
  return h;
}

TextCorpus load_text_corpus(const DataOptions& options) {
  if (!(options.eval_fraction > 0 && options.eval_fraction < 1)) {
    throw std::invalid_argument("data.eval_fraction=" + std::to_string(options.eval_fraction) +
                                " must be between 0 and 1");
  }
  const auto files = list_files(options);
  if (files.size() < 2) {
    throw std::runtime_error("data.path '" + options.path + "' holds " +
                             std::to_string(files.size()) +
                             " document; at least two are needed to hold one out for "
                             "evaluation: point data.path at a folder of several files");
  }
  const auto held_out =
      held_out_documents(static_cast<int64_t>(files.size()), options.eval_fraction);
  ByteTokenizer tokenizer;
  TextCorpus corpus;
  for (size_t i = 0; i < files.size(); ++i) {
    auto& dst = held_out[i] ? corpus.eval : corpus.train;
    (held_out[i] ? corpus.eval_documents : corpus.train_documents)++;
    const auto ids = tokenizer.encode(read_file(files[i]));
    dst.push_back(ByteTokenizer::kBos);
    dst.insert(dst.end(), ids.begin(), ids.end());
    dst.push_back(ByteTokenizer::kEos);
  }
  const size_t need = static_cast<size_t>(options.seq_len) + 1;
  if (corpus.train.size() < need || corpus.eval.size() < need) {
    throw std::runtime_error("data.path '" + options.path +
                             "' is too small: " + std::to_string(corpus.train.size()) +
                             " train and " + std::to_string(corpus.eval.size()) +
                             " eval tokens, but one sequence "
                             "needs data.seq_len + 1 = " +
                             std::to_string(need) + "; lower data.seq_len or add text");
  }
  corpus.unigram_entropy_nats = unigram_entropy(corpus.train);
  return corpus;
}

RandomWindowSource::RandomWindowSource(std::shared_ptr<const std::vector<int32_t>> stream,
                                       int64_t batch_size, int64_t seq_len, uint64_t seed,
                                       int64_t dp_rank, int64_t dp_size)
    : stream_(std::move(stream)),
      batch_size_(batch_size),
      seq_len_(seq_len),
      dp_rank_(dp_rank),
      dp_size_(dp_size),
      rng_(seed) {
  check_shape("RandomWindowSource", batch_size, seq_len, dp_rank, dp_size);
  if (!stream_ || static_cast<int64_t>(stream_->size()) < seq_len + 1) {
    throw std::invalid_argument(
        "RandomWindowSource: a token stream of " + std::to_string(stream_ ? stream_->size() : 0) +
        " tokens is shorter than one window of seq_len + 1 = " + std::to_string(seq_len + 1));
  }
}

Batch RandomWindowSource::next() {
  const uint64_t range = stream_->size() - static_cast<uint64_t>(seq_len_);  // starts 0..range-1
  std::vector<int64_t> starts;
  starts.reserve(static_cast<size_t>(batch_size_));
  // Every rank draws the whole global batch, so the stream of random numbers
  // (and hence the data) does not depend on the number of ranks.
  for (int64_t i = 0; i < batch_size_ * dp_size_; ++i) {
    const auto s = static_cast<int64_t>(rng_() % range);
    if (i / batch_size_ == dp_rank_) starts.push_back(s);
  }
  return make_batch(*stream_, starts, seq_len_);
}

std::vector<Batch> make_eval_batches(const std::vector<int32_t>& stream, int64_t batch_size,
                                     int64_t seq_len, int64_t n_batches, int64_t dp_rank,
                                     int64_t dp_size) {
  check_shape("make_eval_batches", batch_size, seq_len, dp_rank, dp_size);
  const int64_t global = batch_size * dp_size;
  const int64_t windows = global * n_batches;
  const int64_t available = static_cast<int64_t>(stream.size()) / (seq_len + 1);
  if (available < 1) {
    throw std::invalid_argument(
        "make_eval_batches: an eval stream of " + std::to_string(stream.size()) +
        " tokens is shorter than one window of seq_len + 1 = " + std::to_string(seq_len + 1));
  }
  // Window w starts at slot * (seq_len + 1): slots are evenly spaced and
  // distinct while the stream holds enough of them; if not, they repeat in order.
  std::vector<Batch> batches;
  for (int64_t b = 0; b < n_batches; ++b) {
    std::vector<int64_t> starts(static_cast<size_t>(batch_size));
    for (int64_t i = 0; i < batch_size; ++i) {
      const int64_t w = b * global + dp_rank * batch_size + i;
      const int64_t slot = windows <= available ? w * available / windows : w % available;
      starts[static_cast<size_t>(i)] = slot * (seq_len + 1);
    }
    batches.push_back(make_batch(stream, starts, seq_len));
  }
  return batches;
}

std::string RandomWindowSource::state() const {
  std::ostringstream out;
  out << rng_;
  return out.str();
}

void RandomWindowSource::restore(const std::string& state) {
  std::istringstream in(state);
  in >> rng_;
  if (!in) throw std::runtime_error("text source: a checkpoint's generator state does not parse");
}

}  // namespace moxie
