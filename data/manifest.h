// A dataset's manifest.pb: "MOXMANIF" | u32 format version | u64 payload
// bytes | u32 crc32c(payload) | payload (a serialized data::Manifest), written
// atomically (temporary file, fsync, rename). Include only from torch-free
// translation units (see data/CMakeLists.txt).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/shard.pb.h"

namespace moxie {

constexpr uint32_t kManifestFormatVersion = 2;
constexpr const char* kManifestName = "manifest.pb";

void write_manifest(const std::string& path, const data::Manifest& manifest);
// DatasetError naming the file if it is not an intact manifest.
data::Manifest read_manifest(const std::string& path);

// Text segments' tokens (fixed-width, see shard.proto).
void set_text_tokens(data::TextSegment* text, const std::vector<int32_t>& tokens);
// Number of tokens; 0 for a malformed segment (width not 2 or 4, or a size
// not a multiple of it), which text_tokens_valid() reports.
uint32_t text_length(const data::TextSegment& text);
bool text_tokens_valid(const data::TextSegment& text);
int32_t text_token(const data::TextSegment& text, size_t k);
std::vector<int32_t> text_tokens(const data::TextSegment& text);

// A sample's length in model positions: BOS, EOS, every text token, and per
// image 2 markers + (image_size / image_patch)^2 patches, per audio clip 2
// markers + ceil(samples / audio_frame) frames.
uint32_t sample_positions(const data::Sample& sample, const data::Modality& modality);

}  // namespace moxie
