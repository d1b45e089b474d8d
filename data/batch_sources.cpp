// The data-source factory.
#include "data/batch_sources.h"

#include <sstream>

#include "data/dataset_source.h"
#include "data/text_source.h"

namespace moxie {
namespace {

LoaderOptions loader_options(const DataOptions& d, const SourceSetup& s) {
  LoaderOptions o;
  o.path = d.path;
  o.seed = s.seed;
  o.seq_len = d.seq_len;
  o.rows_per_rank = s.micro_batch_size;
  o.dp_rank = s.dp_rank;
  o.dp_size = s.dp_size;
  o.shuffle_block = static_cast<uint64_t>(d.shuffle_block);
  o.prefetch_threads = static_cast<int>(d.prefetch_threads);
  o.prefetch_bytes = static_cast<uint64_t>(d.prefetch_mb) << 20;
  o.on_corrupt = d.on_corrupt;
  o.max_skipped = static_cast<uint64_t>(d.max_skipped);
  o.verify_shards = d.verify_shards;
  return o;
}

BatchSources dataset_sources(const DataOptions& data, const SourceSetup& setup) {
  BatchSources out;
  auto options = loader_options(data, setup);
  out.train = std::make_unique<DatasetSource>(options, setup.provenance_run_dir);
  if (!data.eval_path.empty()) {
    options.path = data.eval_path;
    options.prefetch_threads = 0;
    DatasetLoader eval(options);
    for (int64_t i = 0; i < setup.eval_batches; ++i) out.eval.push_back(to_batch(eval.next()));
    out.log.push_back("data: evaluating on " + std::to_string(setup.eval_batches) + " batches of " +
                      data.eval_path);
  } else {
    out.log.push_back("data: no data.eval_path, so no held-out evaluation");
  }
  return out;
}

BatchSources text_sources(const DataOptions& data, const SourceSetup& setup) {
  BatchSources out;
  auto corpus = load_text_corpus(data);
  out.unigram_entropy_nats = corpus.unigram_entropy_nats;
  std::ostringstream line;
  line << "data: " << corpus.train_documents << " train documents (" << corpus.train.size()
       << " tokens), " << corpus.eval_documents << " eval documents (" << corpus.eval.size()
       << " tokens); unigram entropy " << corpus.unigram_entropy_nats << " nats/token";
  out.log.push_back(line.str());
  auto train_stream = std::make_shared<const std::vector<int32_t>>(std::move(corpus.train));
  out.train = std::make_unique<RandomWindowSource>(
      train_stream, setup.micro_batch_size, data.seq_len, setup.seed, setup.dp_rank, setup.dp_size);
  out.eval = make_eval_batches(corpus.eval, setup.micro_batch_size, data.seq_len,
                               setup.eval_batches, setup.dp_rank, setup.dp_size);
  return out;
}

}  // namespace

BatchSources make_batch_sources(const DataOptions& data, const SourceSetup& setup) {
  if (data.source == DataSourceKind::kDataset) return dataset_sources(data, setup);
  return text_sources(data, setup);
}

}  // namespace moxie
