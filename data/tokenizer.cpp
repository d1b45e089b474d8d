// SentencePiece and byte tokenizers.
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>

#include "data/byte_tokenizer.h"
#include "data/dataset.h"

namespace moxie {
namespace {

class Bytes : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override { return bytes_.encode(text); }
  std::string decode(const std::vector<int32_t>& ids) const override {
    try {
      return bytes_.decode(ids);
    } catch (const std::invalid_argument& e) {
      throw TokenizerError(e.what());
    }
  }
  std::string identity() const override { return "byte"; }
  SpecialIds special() const override {
    using B = ByteTokenizer;
    return {B::kBos,       B::kEos,        B::kPad,      B::kImageBegin,
            B::kImageEnd, B::kAudioBegin, B::kAudioEnd, B::kVocabSize};
  }

 private:
  ByteTokenizer bytes_;
};

class SentencePiece : public Tokenizer {
 public:
  explicit SentencePiece(const std::string& path) : path_(path) {
    if (!std::filesystem::is_regular_file(path)) {
      throw TokenizerError("tokenizer model " + path +
                           " does not exist; train one with 'moxie data tokenizer' or use 'byte'");
    }
    const auto status = sp_.Load(path);
    if (!status.ok()) {
      throw TokenizerError("tokenizer model " + path + " is not a SentencePiece model (" +
                           status.ToString() + "); train one with 'moxie data tokenizer'");
    }
    identity_ = "sentencepiece:" + hex(sha256_of_file(path));
    // Ids the model lacks are appended after its pieces.
    int32_t next = sp_.GetPieceSize();
    auto id_of = [&](int32_t id) { return id >= 0 ? id : next++; };
    auto piece = [&](const char* p) {
      const int id = sp_.PieceToId(p);
      return id == sp_.unk_id() ? next++ : id;
    };
    special_.bos = id_of(sp_.bos_id());
    special_.eos = id_of(sp_.eos_id());
    special_.pad = id_of(sp_.pad_id());
    special_.image_begin = piece("<img>");
    special_.image_end = piece("</img>");
    special_.audio_begin = piece("<aud>");
    special_.audio_end = piece("</aud>");
    special_.vocab_size = next;
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) throw TokenizerError("tokenizer " + path_ + ": " + status.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> keep;
    for (size_t i = 0; i < ids.size(); ++i) {
      const int32_t id = ids[i];
      if (id < 0 || id >= special_.vocab_size) {
        throw TokenizerError("tokenizer " + path_ + ": id " + std::to_string(id) +
                             " at position " + std::to_string(i) + " is outside [0, " +
                             std::to_string(special_.vocab_size) + ")");
      }
      const auto& sp = special_;
      const bool marker = id == sp.image_begin || id == sp.image_end || id == sp.audio_begin ||
                          id == sp.audio_end || id == sp.pad;
      if (id < sp_.GetPieceSize() && !sp_.IsControl(id) && !marker) {
        keep.push_back(id);
      }
    }
    std::string text;
    const auto status = sp_.Decode(keep, &text);
    if (!status.ok()) throw TokenizerError("tokenizer " + path_ + ": " + status.ToString());
    return text;
  }
  std::string identity() const override { return identity_; }
  SpecialIds special() const override { return special_; }

 private:
  std::string path_, identity_;
  sentencepiece::SentencePieceProcessor sp_;
  SpecialIds special_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<Bytes>();
  return std::make_unique<SentencePiece>(spec);
}

void train_sentencepiece(const SentencePieceTrainOptions& o) {
  if (o.inputs.empty()) throw TokenizerError("moxie data tokenizer: no input text files");
  std::string inputs;
  for (const auto& in : o.inputs) {
    if (!std::filesystem::is_regular_file(in)) {
      throw TokenizerError("tokenizer input " + in + " does not exist");
    }
    inputs += (inputs.empty() ? "" : ",") + in;
  }
  if (o.vocab_size < 16) {
    throw TokenizerError("--vocab-size " + std::to_string(o.vocab_size) + " is too small; use 16 or more");
  }
  if (o.model_type != "unigram" && o.model_type != "bpe") {
    throw TokenizerError("--model-type '" + o.model_type + "' is not known; use unigram or bpe");
  }
  const std::unordered_map<std::string, std::string> args = {
      {"input", inputs},
      {"model_prefix", o.model_prefix},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"input_sentence_size", std::to_string(o.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "3"},
      {"user_defined_symbols", "<img>,</img>,<aud>,</aud>"},
      {"byte_fallback", "true"},
      {"minloglevel", "2"},
  };
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    throw TokenizerError("training the tokenizer failed: " + status.ToString() +
                         " (a smaller --vocab-size helps when the text is short)");
  }
}

}  // namespace moxie
