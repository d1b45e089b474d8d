// SentencePiece (through data/sentencepiece_plugin.cpp) and byte tokenizers.
#include "data/tokenizer.h"

#include <dlfcn.h>

#include <filesystem>
#include <mutex>

#include "core/common/env.h"
#include "core/common/file_io.h"
#include "data/byte_tokenizer.h"
#include "data/dataset.h"

#ifndef MOXIE_SENTENCEPIECE_PLUGIN
#define MOXIE_SENTENCEPIECE_PLUGIN "libmoxie_sentencepiece.so"
#endif

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
    return {B::kBos,      B::kEos,        B::kPad,      B::kImageBegin,
            B::kImageEnd, B::kAudioBegin, B::kAudioEnd, B::kVocabSize};
  }

 private:
  ByteTokenizer bytes_;
};

// The plugin's entry points (see sentencepiece_plugin.cpp for why a plugin).
struct Plugin {
  const char* (*error)() = nullptr;
  void* (*load)(const char*, size_t) = nullptr;
  void (*release)(void*) = nullptr;
  void (*info)(void*, int*) = nullptr;
  int (*is_control)(void*, int) = nullptr;
  int (*encode)(void*, const char*, size_t, void (*)(void*, const int*, size_t), void*) = nullptr;
  int (*decode)(void*, const int*, size_t, void (*)(void*, const char*, size_t), void*) = nullptr;
  int (*train)(const char*) = nullptr;
};

const Plugin& plugin() {
  static Plugin p;
  static std::string problem;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv(env::kSentencePiecePlugin);
    const std::string path = env && *env ? env : MOXIE_SENTENCEPIECE_PLUGIN;
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      problem = "cannot load the SentencePiece plugin " + path + " (" + dlerror() +
                "); build it (launch/build.sh) or point MOXIE_SENTENCEPIECE_PLUGIN at it";
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn) problem = "the SentencePiece plugin " + path + " lacks " + name + "; rebuild it";
    };
    sym(p.error, "moxie_sp_error");
    sym(p.load, "moxie_sp_load_serialized");
    sym(p.release, "moxie_sp_free");
    sym(p.info, "moxie_sp_info");
    sym(p.is_control, "moxie_sp_is_control");
    sym(p.encode, "moxie_sp_encode");
    sym(p.decode, "moxie_sp_decode");
    sym(p.train, "moxie_sp_train");
  });
  if (!problem.empty()) throw TokenizerError(problem);
  return p;
}

class SentencePiece : public Tokenizer {
 public:
  explicit SentencePiece(const std::string& path) : path_(path), sp_(plugin()) {
    if (!std::filesystem::exists(path)) {
      throw TokenizerError("tokenizer model " + path +
                           " does not exist; train one with 'moxie data tokenizer' or use 'byte'");
    }
    std::string bytes;
    try {
      bytes = read_small_file(path, "tokenizer model", kMaxTokenizerModelBytes);
    } catch (const FileError& e) {
      throw TokenizerError(std::string(e.what()) + "; name a SentencePiece .model file");
    }
    handle_ = sp_.load(bytes.data(), bytes.size());
    if (!handle_) {
      throw TokenizerError("tokenizer model " + path + " is not a SentencePiece model (" +
                           sp_.error() + "); train one with 'moxie data tokenizer'");
    }
    identity_ = "sentencepiece:" + hex(sha256_of_file(path));
    int ids[9];
    sp_.info(handle_, ids);
    pieces_ = ids[0];
    // Ids the model lacks are appended after its pieces.
    int32_t next = pieces_;
    auto id_of = [&](int id) { return id >= 0 ? id : next++; };
    auto marker = [&](int id) { return id == ids[1] ? next++ : id; };
    special_.bos = id_of(ids[2]);
    special_.eos = id_of(ids[3]);
    special_.pad = id_of(ids[4]);
    special_.image_begin = marker(ids[5]);
    special_.image_end = marker(ids[6]);
    special_.audio_begin = marker(ids[7]);
    special_.audio_end = marker(ids[8]);
    special_.vocab_size = next;
  }
  ~SentencePiece() override {
    if (handle_) sp_.release(handle_);
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> out;
    auto sink = [](void* ctx, const int* ids, size_t n) {
      static_cast<std::vector<int32_t>*>(ctx)->assign(ids, ids + n);
    };
    if (sp_.encode(handle_, text.data(), text.size(), sink, &out) != 0) {
      throw TokenizerError("tokenizer " + path_ + ": " + sp_.error());
    }
    return out;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> keep;
    const auto& s = special_;
    for (size_t i = 0; i < ids.size(); ++i) {
      const int32_t id = ids[i];
      if (id < 0 || id >= s.vocab_size) {
        throw TokenizerError("tokenizer " + path_ + ": id " + std::to_string(id) + " at position " +
                             std::to_string(i) + " is outside [0, " + std::to_string(s.vocab_size) +
                             ")");
      }
      const bool marker = id == s.image_begin || id == s.image_end || id == s.audio_begin ||
                          id == s.audio_end || id == s.pad;
      if (id < pieces_ && !marker && !sp_.is_control(handle_, id)) keep.push_back(id);
    }
    std::string text;
    auto sink = [](void* ctx, const char* t, size_t n) {
      static_cast<std::string*>(ctx)->assign(t, n);
    };
    if (sp_.decode(handle_, keep.data(), keep.size(), sink, &text) != 0) {
      throw TokenizerError("tokenizer " + path_ + ": " + sp_.error());
    }
    return text;
  }
  std::string identity() const override { return identity_; }
  SpecialIds special() const override { return special_; }

 private:
  std::string path_, identity_;
  const Plugin& sp_;
  void* handle_ = nullptr;
  int32_t pieces_ = 0;
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
    if (!std::filesystem::is_regular_file(in))
      throw TokenizerError("tokenizer input " + in + " does not exist");
    if (in.find(',') != std::string::npos || in.find('\n') != std::string::npos) {
      throw TokenizerError("tokenizer input " + in +
                           ": a comma or newline in the name is not supported; rename it");
    }
    inputs += (inputs.empty() ? "" : ",") + in;
  }
  if (o.vocab_size < 16) {
    throw TokenizerError("--vocab-size " + std::to_string(o.vocab_size) +
                         " is too small; use 16 or more");
  }
  if (o.model_type != "unigram" && o.model_type != "bpe") {
    throw TokenizerError("--model-type '" + o.model_type + "' is not known; use unigram or bpe");
  }
  const std::string args =
      "input=" + inputs + "\nmodel_prefix=" + o.model_prefix +
      "\nvocab_size=" + std::to_string(o.vocab_size) + "\nmodel_type=" + o.model_type +
      "\ncharacter_coverage=" + std::to_string(o.character_coverage) +
      "\ninput_sentence_size=" + std::to_string(o.max_sentences) +
      "\nshuffle_input_sentence=true\nunk_id=0\nbos_id=1\neos_id=2\npad_id=3"
      "\nuser_defined_symbols=<img>,</img>,<aud>,</aud>\nbyte_fallback=true\nminloglevel=2";
  if (plugin().train(args.c_str()) != 0) {
    throw TokenizerError(std::string("training the tokenizer failed: ") + plugin().error() +
                         " (a smaller --vocab-size helps when the text is short)");
  }
}

}  // namespace moxie
