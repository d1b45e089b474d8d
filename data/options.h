// Options of the data source.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moxie {

struct DataOptions {
  std::string source = "text";      // text: a folder of text files; dataset: built by moxie data build
  std::string path = ".data/text";  // text: a folder (searched recursively) or one file; dataset: its folder
  std::vector<std::string> extensions = {".txt"};
  std::string tokenizer = "byte";                // byte: 256 bytes + BOS, EOS, PAD
  double eval_fraction = 0.05;                   // share of documents held out for evaluation
  int64_t seq_len = 128;
  // data.source: dataset
  std::string eval_path;            // a held-out dataset for evaluation; empty: no evaluation
  int64_t shuffle_block = 256;      // samples read together (data/sample_order.h)
  int64_t prefetch_threads = 2;     // 0: read on the training thread
  int64_t prefetch_mb = 256;        // read-ahead memory budget
  std::string on_corrupt = "skip";  // skip: log and go on (up to max_skipped) | fail
  int64_t max_skipped = 100;
  bool verify_shards = true;        // sha256 of each shard when first read
};

}  // namespace moxie
