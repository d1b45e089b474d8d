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
// A shard's path as its manifest lists it, resolved inside the dataset's
// folder: an absolute path, a ".." or a link that leads out is refused
// (DatasetError naming the manifest's entry).
std::string shard_file(const std::string& dataset_dir, const std::string& relative);
std::string hex(const std::string& bytes);

// What `moxie data build` does with symbolic links in SRC (said in its log).
constexpr const char* kSymlinkPolicy =
    "symbolic links in SRC are followed to regular files inside SRC; a link that leads out of "
    "SRC or to a folder, and any FIFO or device, is refused by name";
// The most --image-size and --audio-frame may be: one resized image, one
// model position of audio.
constexpr uint32_t kMaxImageSize = 4096;
constexpr uint32_t kMaxAudioFrame = uint32_t{1} << 20;
// What a manifest may claim: token ids, samples over all its shards.
constexpr int32_t kMaxVocabulary = int32_t{1} << 24;
constexpr uint64_t kMaxDatasetSamples = uint64_t{1} << 48;
// One source file (text, image, audio, chat) and the --sources file.
constexpr uint64_t kMaxSourceFileBytes = uint64_t{1} << 30;
constexpr uint64_t kMaxSourcesFileBytes = uint64_t{16} << 20;

struct BuildOptions {
  // A folder (read recursively, files in sorted path order; .tar files in it
  // are read as WebDataset shards) or one .tar file.
  std::string source_dir;
  std::string out_dir;                 // created; must not already hold a manifest
  std::string sources_file;            // YAML licences by path prefix; empty: none
  bool allow_unknown_license = false;  // else a file without one is refused
  uint64_t samples_per_shard = 1024;
  std::vector<std::string> text_extensions = {".txt", ".md", ".rst"};
  std::vector<std::string> image_extensions = {".png", ".jpg", ".jpeg"};
  std::vector<std::string> audio_extensions = {".wav", ".flac", ".ogg"};
  // Supervised fine-tuning records (prompt and response, or chat messages):
  // a .json file is one record, grouped by name with images and audio; each
  // line of a .jsonl file is one record of its own.
  std::vector<std::string> chat_extensions = {".json"};
  std::vector<std::string> chat_lines_extensions = {".jsonl"};
  std::string tokenizer = "byte";  // or a SentencePiece .model file
  uint32_t image_size = 32;        // images are resized to image_size x image_size
  uint32_t image_patch = 8;        // and cut into patches of this side
  uint32_t audio_frame = 320;      // audio samples per model position
  uint32_t audio_sample_rate = 0;  // every audio file must have it; 0: the first file's
};

struct DatasetSummary {
  uint64_t shards = 0, samples = 0, bytes = 0, tokens = 0, images = 0, audio_clips = 0;
  std::map<std::string, uint64_t> samples_per_license;
};

// Files to a dataset. Files with the same key (a folder file's path without
// its last extension; a tar member's name up to the first dot of its last
// component, as WebDataset groups them) make one sample whose segments are
// its images, then its audio, then its text, each kind in extension order.
// One source per file (URI: the relative path, or TAR/MEMBER), with its
// licence, creator, sha256 and lineage. Every licence is decided before
// anything is written; on any error the output folder is removed again.
DatasetSummary build_dataset(const BuildOptions& options);

// Every shard's sha256 and sample count against the manifest, and every
// record's checksum. Returns the problems found (empty: the dataset is intact).
std::vector<std::string> verify_dataset(const std::string& dir, DatasetSummary* summary = nullptr);

// The manifest in words: shards, samples, tokenizer, samples per licence.
std::string describe_dataset(const std::string& dir);
// One sample in words: id, sources (URI, licence, creator, lineage),
// segments; text decoded with `tokenizer` (a model file; byte datasets need none).
std::string describe_sample(const std::string& dir, uint64_t index,
                            const std::string& tokenizer = "");

}  // namespace moxie
