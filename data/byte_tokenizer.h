// Byte-level tokenizer: ids 0..255 are bytes, then BOS, EOS, PAD and the
// markers around images and audio. The fallback
// tokenizer: no training, no files, every text representable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moxie {

class ByteTokenizer {
 public:
  static constexpr int32_t kBos = 256, kEos = 257, kPad = 258, kImageBegin = 259, kImageEnd = 260,
                           kAudioBegin = 261, kAudioEnd = 262, kVocabSize = 263;
  std::vector<int32_t> encode(std::string_view text) const;
  // Special tokens are dropped; an id outside [0, kVocabSize) throws std::invalid_argument.
  std::string decode(const std::vector<int32_t>& ids) const;
};

}  // namespace moxie
