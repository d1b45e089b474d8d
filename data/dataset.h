// Datasets on disk: a folder holding shard files and `manifest.pb`
// (data/manifest.h), built once from source files with their licences, then
// verified and inspected. This header is protobuf-free, so translation units
// that include torch (whose wheel carries other protobuf headers) may use it.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace moxie {

// A dataset that is not what its manifest says, or a source without a
// licence: the message names the file and the fix.
class DatasetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// sha256 of a file's bytes (32 raw bytes); hex() renders them.
std::string sha256_of_file(const std::string& path);
std::string hex(const std::string& bytes);

struct BuildOptions {
  std::string source_dir;              // read recursively, files in sorted order
  std::string out_dir;                 // created; must not already hold a manifest
  std::string sources_file;            // YAML licences by path prefix; empty: none
  bool allow_unknown_license = false;  // else a file without one is refused
  uint64_t samples_per_shard = 1024;
  std::vector<std::string> extensions = {".txt", ".md", ".rst"};
};

struct DatasetSummary {
  uint64_t shards = 0, samples = 0, bytes = 0, tokens = 0;
  std::map<std::string, uint64_t> samples_per_license;
};

// Text files to a dataset: one sample per file (byte tokenizer), one source
// per file (relative path, licence, creator, sha256, lineage).
DatasetSummary build_text_dataset(const BuildOptions& options);

// Every shard's sha256 and sample count against the manifest, and every
// record's checksum. Returns the problems found (empty: the dataset is intact).
std::vector<std::string> verify_dataset(const std::string& dir, DatasetSummary* summary = nullptr);

// The manifest in words: shards, samples, tokenizer, samples per licence.
std::string describe_dataset(const std::string& dir);
// One sample in words: id, source (URI, licence, creator), segments.
std::string describe_sample(const std::string& dir, uint64_t index);

}  // namespace moxie
