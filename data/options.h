// Options of the data source.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moxie {

// Each choice's names, in the enum's order, are the values its config key
// takes (core/config/config.cpp reads them, core/config/config_to_yaml.cpp writes them).

// text: a folder of text files; dataset: built by moxie data build.
enum class DataSourceKind { kText, kDataset };
constexpr std::array<const char*, 2> enum_names(DataSourceKind) { return {"text", "dataset"}; }
inline const char* to_string(DataSourceKind v) { return enum_names(v)[static_cast<size_t>(v)]; }

// A damaged record or shard: skip it (log, count, up to max_skipped), or fail.
enum class OnCorrupt { kSkip, kFail };
constexpr std::array<const char*, 2> enum_names(OnCorrupt) { return {"skip", "fail"}; }
inline const char* to_string(OnCorrupt v) { return enum_names(v)[static_cast<size_t>(v)]; }

struct DataOptions {
  DataSourceKind source = DataSourceKind::kText;
  // text: a folder (searched recursively) or one file; dataset: its folder.
  std::string path = ".data/text";
  std::vector<std::string> extensions = {".txt"};
  std::string tokenizer = "byte";  // byte: 256 bytes + BOS, EOS, PAD
  double eval_fraction = 0.05;     // share of documents held out for evaluation
  int64_t seq_len = 128;
  // data.source: dataset
  std::string eval_path;         // a held-out dataset for evaluation; empty: no evaluation
  int64_t shuffle_block = 256;   // samples read together (data/sample_order.h)
  int64_t prefetch_threads = 0;  // 0: read on the training thread (see data/loader.h)
  int64_t prefetch_mb = 256;     // read-ahead memory budget
  OnCorrupt on_corrupt = OnCorrupt::kSkip;
  int64_t max_skipped = 100;
  bool verify_shards = false;  // sha256 of each shard when first read (see data/loader.h)
};

}  // namespace moxie
