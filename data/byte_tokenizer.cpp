// Byte-level tokenizer.
#include "data/byte_tokenizer.h"

#include <stdexcept>

namespace moxie {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= kVocabSize) {
      throw std::invalid_argument("byte tokenizer: id " + std::to_string(id) + " at position " +
                                  std::to_string(i) + " is outside [0, " +
                                  std::to_string(kVocabSize) + ")");
    }
    if (id < 256) text.push_back(static_cast<char>(id));
  }
  return text;
}

}  // namespace moxie
