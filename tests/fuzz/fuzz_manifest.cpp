// libFuzzer target: arbitrary bytes as a dataset manifest. Reading it must end
// in a DatasetError naming the file or a manifest whose sizes lie inside the
// stated limits, and every shard path it lists must resolve inside the folder
// or be refused: never a crash, a hang or an allocation sized by a field
// (AddressSanitizer and UBSan). Started on an empty corpus folder, it first
// writes valid manifests there as the seeds.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/dataset.h"
#include "data/manifest.h"
#include "data/media.h"

namespace fs = std::filesystem;

namespace {

const std::string& folder() {
  static const std::string dir = [] {
    char name[] = "/tmp/moxie-fuzz-manifest-XXXXXX";
    if (!mkdtemp(name)) std::abort();
    return std::string(name);
  }();
  return dir;
}

void write_seed(const std::string& path, int shards, bool media) {
  moxie::data::Manifest m;
  m.set_tokenizer("byte");
  auto* sp = m.mutable_special();
  sp->set_bos(256);
  sp->set_eos(257);
  sp->set_pad(258);
  sp->set_vocab_size(263);
  if (media) {
    sp->set_image_begin(259);
    sp->set_image_end(260);
    sp->set_audio_begin(261);
    sp->set_audio_end(262);
    m.mutable_modality()->set_image_size(32);
    m.mutable_modality()->set_image_patch(8);
    m.mutable_modality()->set_image_channels(3);
    m.mutable_modality()->set_audio_frame(320);
    m.mutable_modality()->set_audio_sample_rate(16000);
  }
  for (int i = 0; i < shards; ++i) {
    auto* s = m.add_shards();
    s->set_path("shard-" + std::to_string(i) + ".shard");
    s->set_sha256(std::string(32, static_cast<char>(i)));
    s->set_samples(64);
    s->set_bytes(4096);
    auto* src = m.add_sources();
    src->set_uri("text/doc-" + std::to_string(i) + ".txt");
    src->set_license("PSF-2.0");
  }
  moxie::write_manifest(path, m);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (arg.empty() || arg[0] == '-' || !fs::is_directory(arg) || !fs::is_empty(arg)) continue;
    write_seed(arg + "/seed-text", 1, false);
    write_seed(arg + "/seed-media", 3, true);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = folder() + "/" + moxie::kManifestName;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  try {
    const auto m = moxie::read_manifest(path);
    if (m.modality().image_size() > moxie::kMaxImageSize) std::abort();
    for (const auto& shard : m.shards()) {
      try {
        const fs::path p = moxie::shard_file(folder(), shard.path());
        // Inside the folder, whatever the manifest wrote.
        const auto rel = fs::weakly_canonical(p).lexically_relative(fs::weakly_canonical(folder()));
        if (rel.empty() || *rel.begin() == "..") std::abort();
      } catch (const moxie::DatasetError&) {
      }
    }
  } catch (const moxie::DatasetError&) {
  }
  return 0;
}
