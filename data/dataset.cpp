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
#include <sstream>

#include "data/byte_tokenizer.h"
#include "data/crc32c.h"
#include "data/manifest.h"
#include "data/shard_io.h"

namespace moxie {
namespace fs = std::filesystem;
namespace {

constexpr char kManifestMagic[8] = {'M', 'O', 'X', 'M', 'A', 'N', 'I', 'F'};
constexpr const char* kManifestName = "manifest.pb";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DatasetError("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct LicenseRule {
  std::string prefix, license, creator;
};

std::vector<LicenseRule> read_sources_file(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw DatasetError("sources file " + path + ": " + e.what());
  }
  const auto list = root["sources"];
  if (!list || !list.IsSequence()) {
    throw DatasetError("sources file " + path +
                       ": expected a 'sources:' list of {path, license, creator}");
  }
  std::vector<LicenseRule> rules;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& e = list[i];
    const std::string where = "sources file " + path + ", entry " + std::to_string(i + 1);
    if (!e.IsMap() || !e["license"] || e["license"].as<std::string>().empty()) {
      throw DatasetError(where + ": needs a 'license' (an SPDX identifier, e.g. PSF-2.0)");
    }
    rules.push_back({e["path"] ? e["path"].as<std::string>() : "", e["license"].as<std::string>(),
                     e["creator"] ? e["creator"].as<std::string>() : ""});
  }
  return rules;
}

}  // namespace

void write_manifest(const std::string& path, const data::Manifest& manifest) {
  const std::string payload = manifest.SerializeAsString();
  std::string bytes(kManifestMagic, 8);
  char fields[16];
  const uint32_t version = kManifestFormatVersion, crc = crc32c(payload.data(), payload.size());
  const uint64_t size = payload.size();
  std::memcpy(fields, &version, 4);
  std::memcpy(fields + 4, &size, 8);
  std::memcpy(fields + 12, &crc, 4);
  bytes.append(fields, 16);
  bytes += payload;
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw DatasetError("cannot create " + tmp);
  const bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw DatasetError("cannot write " + path + ": " + std::strerror(errno));
  }
}

data::Manifest read_manifest(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 24 || std::memcmp(bytes.data(), kManifestMagic, 8) != 0) {
    throw DatasetError(path +
                       " is not a moxie manifest (bad magic or truncated); rebuild the "
                       "dataset with 'moxie data build'");
  }
  uint32_t version, crc;
  uint64_t size;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&size, bytes.data() + 12, 8);
  std::memcpy(&crc, bytes.data() + 20, 4);
  if (version != kManifestFormatVersion) {
    throw DatasetError(path + ": manifest format version " + std::to_string(version) + " is not " +
                       std::to_string(kManifestFormatVersion) + "; rebuild the dataset");
  }
  if (size != bytes.size() - 24 || crc32c(bytes.data() + 24, size) != crc) {
    throw DatasetError(path +
                       ": manifest checksum mismatch or truncated at byte 24; rebuild the "
                       "dataset");
  }
  data::Manifest manifest;
  if (!manifest.ParseFromArray(bytes.data() + 24, static_cast<int>(size))) {
    throw DatasetError(path + ": manifest does not parse");
  }
  return manifest;
}

std::string sha256_of_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DatasetError("cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
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

DatasetSummary build_text_dataset(const BuildOptions& o) {
  if (!fs::is_directory(o.source_dir)) {
    throw DatasetError("source folder " + o.source_dir + " does not exist");
  }
  if (o.samples_per_shard == 0) throw DatasetError("--samples-per-shard must be at least 1");
  const std::string manifest_path = (fs::path(o.out_dir) / kManifestName).string();
  if (fs::exists(manifest_path)) {
    throw DatasetError(o.out_dir +
                       " already holds a dataset; choose another output folder or "
                       "remove it first");
  }
  const auto rules =
      o.sources_file.empty() ? std::vector<LicenseRule>{} : read_sources_file(o.sources_file);
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(o.source_dir)) {
    if (!entry.is_regular_file()) continue;
    const auto ext = entry.path().extension().string();
    if (std::find(o.extensions.begin(), o.extensions.end(), ext) != o.extensions.end()) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw DatasetError("no text files (.txt, .md, .rst) under " + o.source_dir);

  // Every licence decision is made before anything is written.
  data::Manifest manifest;
  manifest.set_format_version(kManifestFormatVersion);
  manifest.set_tokenizer("byte");
  for (const auto& file : files) {
    const std::string rel = fs::relative(file, o.source_dir).generic_string();
    const LicenseRule* rule = nullptr;
    for (const auto& r : rules) {
      if (rel.rfind(r.prefix, 0) == 0) {
        rule = &r;
        break;
      }
    }
    if (!rule && !o.allow_unknown_license) {
      throw DatasetError(
          "no licence for " + rel + ": add an entry whose path is a prefix of it to " +
          (o.sources_file.empty() ? std::string("a --sources file") : o.sources_file) +
          ", or pass --allow-unknown-license to mark it unknown");
    }
    auto* source = manifest.add_sources();
    source->set_uri(rel);
    source->set_license(rule ? rule->license : "unknown");
    source->set_creator(rule ? rule->creator : "");
    source->set_sha256(sha256_of_file(file.string()));
    auto* step = source->add_lineage();
    step->set_tool("moxie data build");
    step->set_version(std::to_string(kManifestFormatVersion));
    step->set_parameters("tokenizer=byte, one sample per file");
  }

  fs::create_directories(o.out_dir);
  DatasetSummary summary;
  ByteTokenizer tokenizer;
  std::unique_ptr<ShardWriter> writer;
  auto finish_shard = [&] {
    if (!writer) return;
    writer->close();
    auto* shard = manifest.mutable_shards(manifest.shards_size() - 1);
    const std::string path = (fs::path(o.out_dir) / shard->path()).string();
    shard->set_sha256(sha256_of_file(path));
    shard->set_samples(writer->samples());
    shard->set_bytes(writer->bytes());
    summary.bytes += writer->bytes();
    writer.reset();
  };
  for (size_t i = 0; i < files.size(); ++i) {
    if (i % o.samples_per_shard == 0) {
      finish_shard();
      char name[32];
      std::snprintf(name, sizeof(name), "shard-%05d.shard", manifest.shards_size());
      manifest.add_shards()->set_path(name);
      writer = std::make_unique<ShardWriter>((fs::path(o.out_dir) / name).string());
    }
    data::Sample sample;
    sample.set_id(i);
    sample.set_source(static_cast<uint32_t>(i));
    auto* text = sample.add_segments()->mutable_text();
    for (int32_t t : tokenizer.encode(read_file(files[i].string()))) text->add_tokens(t);
    summary.tokens += static_cast<uint64_t>(text->tokens_size());
    ++summary.samples_per_license[manifest.sources(static_cast<int>(i)).license()];
    writer->append(sample);
  }
  finish_shard();
  write_manifest(manifest_path, manifest);
  summary.shards = static_cast<uint64_t>(manifest.shards_size());
  summary.samples = files.size();
  return summary;
}

std::vector<std::string> verify_dataset(const std::string& dir, DatasetSummary* summary) {
  std::vector<std::string> problems;
  const auto manifest = read_manifest((fs::path(dir) / kManifestName).string());
  DatasetSummary s;
  uint64_t next_id = 0;
  for (const auto& shard : manifest.shards()) {
    const std::string path = (fs::path(dir) / shard.path()).string();
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
          if (sample.source() >= static_cast<uint32_t>(manifest.sources_size())) {
            problems.push_back("shard " + path + " at byte " + std::to_string(reader.offset(i)) +
                               ": source id " + std::to_string(sample.source()) +
                               " is not in the manifest");
          } else {
            ++s.samples_per_license[manifest.sources(static_cast<int>(sample.source())).license()];
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
  out << "dataset " << dir << ": format " << manifest.format_version() << ", tokenizer "
      << manifest.tokenizer() << "\n"
      << manifest.shards_size() << " shards, " << samples << " samples, " << bytes << " bytes, "
      << manifest.sources_size() << " sources\n"
      << "sources per licence:\n";
  for (const auto& [license, n] : per_license) out << "  " << license << ": " << n << "\n";
  return out.str();
}

std::string describe_sample(const std::string& dir, uint64_t index) {
  const auto manifest = read_manifest((fs::path(dir) / kManifestName).string());
  uint64_t first = 0;
  for (const auto& shard : manifest.shards()) {
    if (index < first + shard.samples()) {
      ShardReader reader((fs::path(dir) / shard.path()).string());
      const auto sample = reader.read(index - first);
      std::ostringstream out;
      out << "sample " << sample.id() << " (" << shard.path() << ", byte "
          << reader.offset(index - first) << ")\n";
      if (sample.source() < static_cast<uint32_t>(manifest.sources_size())) {
        const auto& src = manifest.sources(static_cast<int>(sample.source()));
        out << "source: " << src.uri() << ", licence " << src.license()
            << (src.creator().empty() ? "" : ", by " + src.creator()) << ", sha256 "
            << hex(src.sha256()).substr(0, 16) << "...\n";
      }
      for (const auto& seg : sample.segments()) {
        if (seg.has_text()) {
          std::vector<int32_t> ids(seg.text().tokens().begin(), seg.text().tokens().end());
          std::string text = ByteTokenizer().decode(ids);
          if (text.size() > 200) text = text.substr(0, 200) + "...";
          out << "text: " << seg.text().tokens_size() << " tokens: " << text << "\n";
        } else if (seg.has_image()) {
          out << "image: " << seg.image().width() << "x" << seg.image().height() << "x"
              << seg.image().channels() << "\n";
        } else if (seg.has_audio()) {
          out << "audio: "
              << seg.audio().pcm_s16le().size() / 2 / std::max(1u, seg.audio().channels())
              << " frames at " << seg.audio().sample_rate() << " Hz\n";
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
