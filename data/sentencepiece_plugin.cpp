// SentencePiece behind a C interface, built as a plugin that tokenizer.cpp
// loads with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
//
// Why a plugin: Debian's libsentencepiece carries its own copy of protobuf
// (3.14, symbols exported), while moxie links Debian's libprotobuf (3.21) for
// its dataset format. Linked into one program, the two copies' symbols
// interpose and SentencePiece aborts in its protobuf version check. Loaded
// with RTLD_DEEPBIND, SentencePiece binds to its own copy first, and neither
// copy's symbols enter the program's global scope.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {
thread_local std::string g_error;

int fail(const sentencepiece::util::Status& status) {
  g_error = status.ToString();
  return -1;
}
}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char* moxie_sp_error() { return g_error.c_str(); }

// The model's bytes, read (and bounded) by the caller: the library never
// opens a path itself, so a FIFO or device is refused before it gets here.
__attribute__((visibility("default"))) void* moxie_sp_load_serialized(const char* bytes, size_t n) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->LoadFromSerializedProto(std::string_view(bytes, n));
  if (!status.ok()) {
    g_error = status.ToString();
    delete sp;
    return nullptr;
  }
  return sp;
}

__attribute__((visibility("default"))) void moxie_sp_free(void* handle) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

// ids: what moxie_sp_info fills, in this order: piece count, unk, bos, eos, pad,
// then the ids of <img> </img> <aud> </aud> (unk where absent).
__attribute__((visibility("default"))) void moxie_sp_info(void* handle, int* out) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  out[0] = sp->GetPieceSize();
  out[1] = sp->unk_id();
  out[2] = sp->bos_id();
  out[3] = sp->eos_id();
  out[4] = sp->pad_id();
  const char* markers[4] = {"<img>", "</img>", "<aud>", "</aud>"};
  for (int i = 0; i < 4; ++i) out[5 + i] = sp->PieceToId(markers[i]);
}

__attribute__((visibility("default"))) int moxie_sp_is_control(void* handle, int id) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->IsControl(id) ? 1 : 0;
}

// Encodes text; calls sink(context, ids, n) once. 0 on success.
__attribute__((visibility("default"))) int moxie_sp_encode(void* handle, const char* text,
                                                           size_t size,
                                                           void (*sink)(void*, const int*, size_t),
                                                           void* context) {
  std::vector<int> ids;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Encode(
      std::string_view(text, size), &ids);
  if (!status.ok()) return fail(status);
  sink(context, ids.data(), ids.size());
  return 0;
}

// Decodes ids; calls sink(context, text, size) once. 0 on success.
__attribute__((visibility("default"))) int moxie_sp_decode(void* handle, const int* ids, size_t n,
                                                           void (*sink)(void*, const char*, size_t),
                                                           void* context) {
  std::string text;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Decode(
      std::vector<int>(ids, ids + n), &text);
  if (!status.ok()) return fail(status);
  sink(context, text.data(), text.size());
  return 0;
}

// args: "key=value" lines. 0 on success.
__attribute__((visibility("default"))) int moxie_sp_train(const char* args) {
  std::unordered_map<std::string, std::string> kwargs;
  std::string line;
  for (const char* p = args;; ++p) {
    if (*p == '\n' || *p == '\0') {
      const auto eq = line.find('=');
      if (eq != std::string::npos) kwargs[line.substr(0, eq)] = line.substr(eq + 1);
      line.clear();
      if (*p == '\0') break;
    } else {
      line += *p;
    }
  }
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs);
  return status.ok() ? 0 : fail(status);
}

}  // extern "C"
