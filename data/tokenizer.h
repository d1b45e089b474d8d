// Tokenizers: SentencePiece (trained with `moxie data tokenizer` or loaded
// from a model file) and the byte-level fallback, behind one interface, with
// the special ids the loader inserts (BOS/EOS around a sample, PAD, and the
// markers around images and audio). Torch- and protobuf-free.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace moxie {

// A SentencePiece model file larger than this is refused before it is read.
constexpr uint64_t kMaxTokenizerModelBytes = uint64_t{256} << 20;

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SpecialIds {
  int32_t bos = 0, eos = 0, pad = 0;
  int32_t image_begin = 0, image_end = 0, audio_begin = 0, audio_end = 0;
  int32_t vocab_size = 0;  // every id is below this
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Special ids are dropped; an id outside [0, vocab_size) throws TokenizerError.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // "byte", or "sentencepiece:<sha256 of the model file>": recorded in a
  // dataset's manifest, compared when a model file is given to the loader.
  virtual std::string identity() const = 0;
  virtual SpecialIds special() const = 0;
};

// spec: "byte", or the path of a SentencePiece .model file. TokenizerError
// naming the file if it cannot be loaded.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

struct SentencePieceTrainOptions {
  std::vector<std::string> inputs;  // text files, one sentence per line
  std::string model_prefix;         // writes PREFIX.model and PREFIX.vocab
  int32_t vocab_size = 4096;
  std::string model_type = "unigram";  // unigram | bpe
  double character_coverage = 0.9995;
  uint64_t max_sentences = 2000000;  // sampled from the inputs when there are more
};

// Trains a SentencePiece model whose ids are: 0 <unk>, 1 <s>, 2 </s>, 3
// <pad>, then <img> </img> <aud> </aud>, then the learned pieces.
void train_sentencepiece(const SentencePieceTrainOptions& options);

}  // namespace moxie
