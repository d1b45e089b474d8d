// Building, verifying and describing datasets.
#include "data/dataset.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "core/common/crc32c.h"
#include "core/common/file_io.h"
#include "core/common/framed_file.h"
#include "data/manifest.h"
#include "data/media.h"
#include "data/shard_io.h"
#include "data/tokenizer.h"

namespace moxie {
namespace fs = std::filesystem;
namespace {

constexpr char kManifestMagic[8] = {'M', 'O', 'X', 'M', 'A', 'N', 'I', 'F'};

}  // namespace

void write_manifest(const std::string& path, const data::Manifest& manifest) {
  try {
    write_framed_file(path, kManifestMagic, kManifestFormatVersion, manifest.SerializeAsString());
  } catch (const FramedFileError& e) {
    throw DatasetError(e.what());
  }
}

namespace {

// What sizes tensors and loops downstream (the loader's image and audio
// shapes, token ids, sample counts), bounded here once, with the field named.
void check_manifest(const data::Manifest& m, const std::string& path) {
  auto bad = [&](const std::string& what) {
    throw DatasetError(path + ": " + what + "; the manifest is damaged, rebuild the dataset");
  };
  auto field = [&](const char* name, uint64_t v, uint64_t limit) {
    try {
      checked_count(v, limit, path, name);
    } catch (const FileError& e) {
      bad(std::string(name) + " is " + std::to_string(v) + ", more than " + std::to_string(limit));
    }
  };
  const auto& md = m.modality();
  field("modality.image_size", md.image_size(), kMaxImageSize);
  field("modality.image_patch", md.image_patch(), md.image_size());
  if (md.image_patch() != 0 && md.image_size() % md.image_patch() != 0) {
    bad("modality.image_patch " + std::to_string(md.image_patch()) +
        " does not divide modality.image_size " + std::to_string(md.image_size()));
  }
  field("modality.image_channels", md.image_channels(), 4);
  field("modality.audio_frame", md.audio_frame(), kMaxAudioFrame);
  field("modality.audio_sample_rate", md.audio_sample_rate(), kMaxAudioSampleRate);
  const auto& sp = m.special();
  if (sp.vocab_size() < 0 || sp.vocab_size() > kMaxVocabulary) {
    bad("special.vocab_size is " + std::to_string(sp.vocab_size()) + ", not from 0 to " +
        std::to_string(kMaxVocabulary));
  }
  for (auto [name, id] : {std::pair{"bos", sp.bos()},
                          {"eos", sp.eos()},
                          {"pad", sp.pad()},
                          {"image_begin", sp.image_begin()},
                          {"image_end", sp.image_end()},
                          {"audio_begin", sp.audio_begin()},
                          {"audio_end", sp.audio_end()}}) {
    if (id < -1 || (sp.vocab_size() > 0 && id >= sp.vocab_size())) {
      bad(std::string("special.") + name + " is " + std::to_string(id) +
          ", outside the vocabulary of " + std::to_string(sp.vocab_size()));
    }
  }
  uint64_t samples = 0;
  for (const auto& shard : m.shards()) {
    field("shards.samples", shard.samples(), kMaxDatasetSamples - samples);
    samples += shard.samples();
  }
}

}  // namespace

data::Manifest read_manifest(const std::string& path) {
  std::string payload;
  try {
    payload = read_framed_file(path, kManifestMagic, kManifestFormatVersion);
  } catch (const FramedFileError& e) {
    throw DatasetError(std::string(e.what()) + "; rebuild the dataset with 'moxie data build'");
  }
  data::Manifest manifest;
  if (!manifest.ParseFromString(payload)) throw DatasetError(path + ": manifest does not parse");
  check_manifest(manifest, path);
  return manifest;
}

std::string shard_file(const std::string& dataset_dir, const std::string& relative) {
  try {
    resolve_inside(dataset_dir, relative, "shard");
    return (fs::path(dataset_dir) / relative).string();  // as written, for messages
  } catch (const FileError& e) {
    throw DatasetError(std::string(e.what()) + " (listed in " +
                       (fs::path(dataset_dir) / kManifestName).string() +
                       "); rebuild the dataset with 'moxie data build'");
  }
}

std::string sha256_of_file(const std::string& path) {
  // InputFile: a FIFO or device named in a manifest is refused, not hashed forever.
  std::unique_ptr<InputFile> in;
  try {
    in = std::make_unique<InputFile>(path, "file");
  } catch (const FileError& e) {
    throw DatasetError(e.what());
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  for (uint64_t at = 0; at < in->size();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), in->size() - at));
    try {
      in->read_at(at, buf.data(), n);
    } catch (const FileError& e) {
      throw DatasetError(e.what());
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), n);
    at += n;
  }
  unsigned char digest[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &n);
  return std::string(reinterpret_cast<char*>(digest), n);
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::vector<std::string> verify_dataset(const std::string& dir, DatasetSummary* summary) {
  std::vector<std::string> problems;
  const auto manifest = read_manifest((fs::path(dir) / kManifestName).string());
  DatasetSummary s;
  uint64_t next_id = 0;
  for (const auto& shard : manifest.shards()) {
    const std::string path = shard_file(dir, shard.path());
    try {
      if (sha256_of_file(path) != shard.sha256()) {
        problems.push_back("shard " + path + ": sha256 differs from the manifest's " +
                           hex(shard.sha256()) + " (the file changed after the build)");
      }
      ShardReader reader(path);
      if (reader.size() != shard.samples()) {
        problems.push_back("shard " + path + ": " + std::to_string(reader.size()) +
                           " samples, the manifest says " + std::to_string(shard.samples()));
      }
      for (size_t i = 0; i < reader.size(); ++i) {
        try {
          const auto sample = reader.read(i);
          const std::string at = "shard " + path + " at byte " + std::to_string(reader.offset(i));
          std::set<std::string> licenses;
          for (uint32_t src : sample.sources()) {
            if (src >= static_cast<uint32_t>(manifest.sources_size())) {
              problems.push_back(at + ": source id " + std::to_string(src) +
                                 " is not in the manifest");
            } else {
              licenses.insert(manifest.sources(static_cast<int>(src)).license());
            }
          }
          for (const auto& l : licenses) ++s.samples_per_license[l];
          const std::vector<uint32_t> listed(sample.sources().begin(), sample.sources().end());
          if (listed != reader.sources(i)) {
            problems.push_back(at + ": the index lists other sources than the sample record");
          }
          if (sample_positions(sample, manifest.modality()) != reader.positions(i)) {
            problems.push_back(at + ": the index gives " + std::to_string(reader.positions(i)) +
                               " positions, the sample has " +
                               std::to_string(sample_positions(sample, manifest.modality())));
          }
          if (sample.id() != next_id + i) {
            problems.push_back("shard " + path + " at byte " + std::to_string(reader.offset(i)) +
                               ": sample id " + std::to_string(sample.id()) + " out of order");
          }
        } catch (const ShardError& e) {
          problems.push_back(e.what());
        }
      }
      next_id += reader.size();
      s.samples += reader.size();
      s.bytes += shard.bytes();
    } catch (const std::exception& e) {
      problems.push_back(e.what());
    }
  }
  s.shards = static_cast<uint64_t>(manifest.shards_size());
  if (summary) *summary = s;
  return problems;
}

std::string describe_dataset(const std::string& dir) {
  const auto manifest = read_manifest((fs::path(dir) / kManifestName).string());
  uint64_t samples = 0, bytes = 0;
  for (const auto& shard : manifest.shards()) {
    samples += shard.samples();
    bytes += shard.bytes();
  }
  std::map<std::string, uint64_t> per_license;
  for (const auto& source : manifest.sources()) ++per_license[source.license()];
  std::ostringstream out;
  const auto& m = manifest.modality();
  out << "dataset " << dir << ": format " << manifest.format_version() << ", tokenizer "
      << manifest.tokenizer() << " (vocabulary " << manifest.special().vocab_size() << ")\n"
      << "images " << m.image_size() << "x" << m.image_size() << " in " << m.image_patch() << "x"
      << m.image_patch() << " patches; audio frames of " << m.audio_frame() << " samples"
      << (m.audio_sample_rate() ? " at " + std::to_string(m.audio_sample_rate()) + " Hz" : "")
      << "\n"
      << manifest.shards_size() << " shards, " << samples << " samples, " << bytes << " bytes, "
      << manifest.sources_size() << " sources\n"
      << "sources per licence:\n";
  for (const auto& [license, n] : per_license) out << "  " << license << ": " << n << "\n";
  return out.str();
}

std::string describe_sample(const std::string& dir, uint64_t index,
                            const std::string& tokenizer_spec) {
  const auto manifest = read_manifest((fs::path(dir) / kManifestName).string());
  std::unique_ptr<Tokenizer> tokenizer;
  if (!tokenizer_spec.empty()) {
    tokenizer = load_tokenizer(tokenizer_spec);
    if (tokenizer->identity() != manifest.tokenizer()) {
      throw DatasetError("tokenizer " + tokenizer_spec + " is " + tokenizer->identity() +
                         ", the dataset was built with " + manifest.tokenizer());
    }
  } else if (manifest.tokenizer() == "byte") {
    tokenizer = load_tokenizer("byte");
  }
  uint64_t first = 0;
  for (const auto& shard : manifest.shards()) {
    if (index < first + shard.samples()) {
      ShardReader reader(shard_file(dir, shard.path()));
      const auto sample = reader.read(index - first);
      std::ostringstream out;
      out << "sample " << sample.id() << " (" << shard.path() << ", byte "
          << reader.offset(index - first) << ")\n";
      for (uint32_t id : sample.sources()) {
        if (id >= static_cast<uint32_t>(manifest.sources_size())) continue;
        const auto& src = manifest.sources(static_cast<int>(id));
        out << "source: " << src.uri() << ", licence " << src.license()
            << (src.creator().empty() ? "" : ", by " + src.creator()) << ", sha256 "
            << hex(src.sha256()).substr(0, 16) << "...\n";
        for (const auto& t : src.lineage()) {
          out << "  via " << t.tool() << " " << t.version() << " (" << t.parameters() << ")\n";
        }
      }
      for (const auto& seg : sample.segments()) {
        if (seg.has_text()) {
          const auto ids = text_tokens(seg.text());
          std::string text;
          if (tokenizer) {
            text = tokenizer->decode(ids);
          } else {
            for (size_t k = 0; k < std::min<size_t>(ids.size(), 32); ++k)
              text += std::to_string(ids[k]) + " ";
            text += "(token ids; pass --tokenizer MODEL to decode)";
          }
          if (text.size() > 200) text = text.substr(0, 200) + "...";
          out << "text: " << ids.size() << " tokens: " << text << "\n";
        } else if (seg.has_image()) {
          out << "image: " << seg.image().width() << "x" << seg.image().height() << "x"
              << seg.image().channels() << "\n";
        } else if (seg.has_audio()) {
          out << "audio: "
              << seg.audio().pcm_s16le().size() / 2 / std::max(1u, seg.audio().channels())
              << " samples at " << seg.audio().sample_rate() << " Hz\n";
        }
      }
      return out.str();
    }
    first += shard.samples();
  }
  throw DatasetError("the dataset in " + dir + " has " + std::to_string(first) +
                     " samples; there is no sample " + std::to_string(index));
}

}  // namespace moxie
