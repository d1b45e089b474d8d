// moxie data build: folders of files and WebDataset tars to a dataset.
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/common/file_io.h"
#include "data/dataset.h"
#include "data/manifest.h"
#include "data/media.h"
#include "data/shard_io.h"
#include "data/tar_reader.h"
#include "data/tokenizer.h"

namespace moxie {
namespace fs = std::filesystem;

void set_text_tokens(data::TextSegment* text, const std::vector<int32_t>& tokens) {
  const bool narrow =
      std::all_of(tokens.begin(), tokens.end(), [](int32_t t) { return t >= 0 && t < 65536; });
  const uint32_t width = narrow ? 2 : 4;
  std::string bytes(tokens.size() * width, '\0');
  for (size_t k = 0; k < tokens.size(); ++k) {
    const uint32_t v = static_cast<uint32_t>(tokens[k]);
    for (uint32_t b = 0; b < width; ++b)
      bytes[k * width + b] = static_cast<char>((v >> (8 * b)) & 0xff);
  }
  text->set_width(width);
  text->set_tokens(std::move(bytes));
}

bool text_tokens_valid(const data::TextSegment& text) {
  return (text.width() == 2 || text.width() == 4) && text.tokens().size() % text.width() == 0;
}

uint32_t text_length(const data::TextSegment& text) {
  return text_tokens_valid(text) ? static_cast<uint32_t>(text.tokens().size() / text.width()) : 0;
}

int32_t text_token(const data::TextSegment& text, size_t k) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.tokens().data()) + k * text.width();
  if (text.width() == 2) return static_cast<int32_t>(p[0] | (p[1] << 8));
  return static_cast<int32_t>(static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                              (static_cast<uint32_t>(p[2]) << 16) |
                              (static_cast<uint32_t>(p[3]) << 24));
}

std::vector<int32_t> text_tokens(const data::TextSegment& text) {
  std::vector<int32_t> out(text_length(text));
  for (size_t k = 0; k < out.size(); ++k) out[k] = text_token(text, k);
  return out;
}

uint32_t sample_positions(const data::Sample& sample, const data::Modality& m) {
  uint64_t n = 2;  // BOS, EOS
  for (const auto& seg : sample.segments()) {
    if (seg.has_text()) {
      n += text_length(seg.text());
    } else if (seg.has_image()) {
      const uint64_t side = m.image_patch() ? m.image_size() / m.image_patch() : 0;
      n += 2 + side * side;
    } else if (seg.has_audio()) {
      const uint64_t samples = seg.audio().pcm_s16le().size() / 2;
      n += 2 + (m.audio_frame() ? (samples + m.audio_frame() - 1) / m.audio_frame() : 0);
    }
  }
  return static_cast<uint32_t>(std::min<uint64_t>(n, UINT32_MAX));
}

namespace {

struct LicenseRule {
  std::string prefix, license, creator;
};

// A string under `key` of a sources entry, "" when absent; anything but a
// plain string is refused in moxie's words (not yaml-cpp's "bad conversion").
std::string entry_string(const YAML::Node& entry, const char* key, const std::string& where) {
  const YAML::Node v = entry[key];
  if (!v || v.IsNull()) return "";
  if (!v.IsScalar()) throw DatasetError(where + ": '" + key + "' must be a string");
  return v.Scalar();
}

std::vector<LicenseRule> read_sources_file(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(read_small_file(path, "sources file", kMaxSourcesFileBytes));
  } catch (const FileError& e) {
    throw DatasetError(e.what());
  } catch (const YAML::Exception& e) {
    throw DatasetError("sources file " + path + ":" + std::to_string(e.mark.line + 1) +
                       ": YAML syntax error: " + e.msg);
  }
  const YAML::Node list = root.IsMap() ? root["sources"] : YAML::Node();
  if (!list || !list.IsSequence()) {
    throw DatasetError("sources file " + path +
                       ": expected a 'sources:' list of {path, license, creator}");
  }
  std::vector<LicenseRule> rules;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node e = list[i];
    const std::string where = "sources file " + path + ", entry " + std::to_string(i + 1);
    if (!e.IsMap() || entry_string(e, "license", where).empty()) {
      throw DatasetError(where + ": needs a 'license' (an SPDX identifier, e.g. PSF-2.0)");
    }
    rules.push_back({entry_string(e, "path", where), entry_string(e, "license", where),
                     entry_string(e, "creator", where)});
  }
  return rules;
}

std::string read_file(const fs::path& path) {
  try {
    return read_small_file(path.string(), "source", kMaxSourceFileBytes);
  } catch (const FileError& e) {
    throw DatasetError(e.what());
  }
}

std::string sha256_of(const std::string& bytes) {
  unsigned char digest[32];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(digest), n);
}

enum class Kind { kText, kImage, kAudio, kChat, kChatLines, kNone };

// One supervised fine-tuning record as text segments: what the model reads
// (context: never a loss target) and what it learns to answer. Either
//   {"prompt": "...", "response": "..."}
// or {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
// with the template "<|role|>\n" + content + "\n" for every message, where
// only an assistant's content is a response (the loader's EOS follows the
// last one). `what` names the record in errors.
std::vector<std::pair<std::string, bool>> chat_segments(const std::string& json,
                                                        const std::string& what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const std::exception& e) {
    throw DatasetError(what + " is not valid JSON: " + e.what());
  }
  auto text_of = [&](const nlohmann::json& v, const std::string& key) {
    if (!v.is_object() || !v.contains(key) || !v[key].is_string()) {
      throw DatasetError(what + ": '" + key +
                         "' must be a string (records are {\"prompt\": ..., \"response\": ...} "
                         "or {\"messages\": [{\"role\": ..., \"content\": ...}, ...]})");
    }
    return v[key].get<std::string>();
  };
  std::vector<std::pair<std::string, bool>> out;  // (text, is context)
  auto context = [&](const std::string& t) {
    if (!out.empty() && out.back().second)
      out.back().first += t;
    else
      out.push_back({t, true});
  };
  if (j.is_object() && j.contains("messages")) {
    if (!j["messages"].is_array() || j["messages"].empty())
      throw DatasetError(what + ": 'messages' must be a non-empty list");
    bool answered = false;
    for (const auto& m : j["messages"]) {
      const auto role = text_of(m, "role");
      const auto content = text_of(m, "content");
      if (role != "system" && role != "user" && role != "assistant") {
        throw DatasetError(what + ": role '" + role + "' is not system, user or assistant");
      }
      if (role != "assistant") {
        context("<|" + role + "|>\n" + content + "\n");
        continue;
      }
      context("<|assistant|>\n");
      out.push_back({content, false});
      answered = true;
      context("\n");
    }
    if (!answered) throw DatasetError(what + ": no assistant message, so nothing to learn");
    if (out.back().second && out.back().first == "\n")
      out.pop_back();  // the EOS ends the last answer
    return out;
  }
  context("<|user|>\n" + text_of(j, "prompt") + "\n<|assistant|>\n");
  out.push_back({text_of(j, "response"), false});
  return out;
}

// One file of a sample: where it is and how to get its bytes.
struct Item {
  std::string uri;  // relative path, or TAR/MEMBER
  std::string ext;  // lower case, with the dot
  Kind kind = Kind::kNone;
  std::string bytes;  // filled in the second pass
};

struct Group {
  std::string key;
  std::vector<Item> items;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

class Builder {
 public:
  explicit Builder(const BuildOptions& o) : o_(o), tokenizer_(load_tokenizer(o.tokenizer)) {
    if (!o.sources_file.empty()) rules_ = read_sources_file(o.sources_file);
    if (o.image_patch == 0 || o.image_size == 0 || o.image_size % o.image_patch != 0) {
      throw DatasetError("--image-patch " + std::to_string(o.image_patch) +
                         " must divide --image-size " + std::to_string(o.image_size));
    }
    if (o.image_size > kMaxImageSize) {
      throw DatasetError("--image-size " + std::to_string(o.image_size) + " is more than " +
                         std::to_string(kMaxImageSize) + " pixels on a side");
    }
    if (o.audio_frame == 0 || o.audio_frame > kMaxAudioFrame) {
      throw DatasetError("--audio-frame " + std::to_string(o.audio_frame) + " must be from 1 to " +
                         std::to_string(kMaxAudioFrame) + " samples");
    }
    if (o.audio_sample_rate > static_cast<uint32_t>(kMaxAudioSampleRate)) {
      throw DatasetError("--audio-rate " + std::to_string(o.audio_sample_rate) + " is more than " +
                         std::to_string(kMaxAudioSampleRate) + " Hz");
    }
  }

  Kind kind_of(const std::string& ext) const {
    auto in = [&](const std::vector<std::string>& list) {
      return std::find(list.begin(), list.end(), ext) != list.end();
    };
    if (in(o_.text_extensions)) return Kind::kText;
    if (in(o_.image_extensions)) return Kind::kImage;
    if (in(o_.audio_extensions)) return Kind::kAudio;
    if (in(o_.chat_extensions)) return Kind::kChat;
    if (in(o_.chat_lines_extensions)) return Kind::kChatLines;
    return Kind::kNone;
  }

  // Pass 1: names only. Pass 2 (fill = true): with bytes, group by group.
  void scan(bool fill, const std::function<void(Group&)>& each) {
    const fs::path src(o_.source_dir);
    std::vector<fs::path> files;
    if (fs::is_regular_file(src)) {
      files.push_back(src);
    } else if (fs::is_directory(src)) {
      for (const auto& e : fs::recursive_directory_iterator(src)) {
        if (e.is_symlink()) {
          // Followed only to a regular file inside SRC (kSymlinkPolicy).
          const std::string rel = fs::relative(e.path(), src).string();
          try {
            resolve_inside(src, rel, "source link");
          } catch (const FileError& err) {
            throw DatasetError("source " + e.path().string() +
                               " is a symbolic link that leads out of " + src.string() +
                               "; copy the file in or remove the link");
          }
          if (!e.is_regular_file()) {
            throw DatasetError("source " + e.path().string() + " is a symbolic link to " +
                               file_kind(fs::canonical(e.path())) +
                               ", not to a file; links are followed to files only");
          }
          files.push_back(e.path());
        } else if (e.is_regular_file()) {
          files.push_back(e.path());
        } else if (!e.is_directory()) {
          throw DatasetError("source " + e.path().string() + " is " + file_kind(e.path()) +
                             "; a source folder holds regular files and folders only");
        }
      }
      std::sort(files.begin(), files.end());
    } else {
      throw DatasetError("source " + o_.source_dir + " does not exist");
    }
    const fs::path base = fs::is_directory(src) ? src : src.parent_path();
    Group current;
    auto flush = [&] {
      if (current.items.empty()) return;
      // A .jsonl file is one sample per line, never grouped with other files.
      std::vector<Item> lines_files, rest;
      for (auto& item : current.items)
        (item.kind == Kind::kChatLines ? lines_files : rest).push_back(std::move(item));
      for (auto& file : lines_files) {
        if (!fill) {  // pass 1 (licences) looks at names only
          Group whole{file.uri, {file}};
          each(whole);
          continue;
        }
        std::istringstream in(file.bytes);
        std::string line;
        for (int64_t n = 1; std::getline(in, line); ++n) {
          if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
          Group one{file.uri + "#L" + std::to_string(n),
                    {Item{file.uri + "#L" + std::to_string(n), ".json", Kind::kChat, line}}};
          each(one);
        }
      }
      current.items = std::move(rest);
      if (!current.items.empty()) each(current);
      current = Group{};
    };
    for (const auto& file : files) {
      const std::string rel = fs::relative(file, base).generic_string();
      if (lower(file.extension().string()) == ".tar") {
        flush();
        for_each_tar_file(file.string(), [&](const std::string& name, std::string bytes) {
          auto [key, ext] = split_key(name);
          Item item{rel + "/" + name, lower("." + ext.substr(ext.rfind('.') + 1)), Kind::kNone, ""};
          item.kind = kind_of(item.ext);
          if (item.kind == Kind::kNone) return;
          if (rel + "/" + key != current.key) flush();
          current.key = rel + "/" + key;
          if (fill) item.bytes = std::move(bytes);
          current.items.push_back(std::move(item));
        });
        flush();
        continue;
      }
      Item item{rel, lower(file.extension().string()), Kind::kNone, ""};
      item.kind = kind_of(item.ext);
      if (item.kind == Kind::kNone) continue;
      const std::string key = fs::path(rel).replace_extension().generic_string();
      if (key != current.key) flush();
      current.key = key;
      if (fill) item.bytes = read_file(file);
      current.items.push_back(std::move(item));
    }
    flush();
  }

  const LicenseRule* rule_for(const std::string& uri) const {
    for (const auto& r : rules_) {
      if (uri.rfind(r.prefix, 0) == 0) return &r;
    }
    return nullptr;
  }

  DatasetSummary run() {
    const std::string manifest_path = (fs::path(o_.out_dir) / kManifestName).string();
    if (fs::exists(manifest_path)) {
      throw DatasetError(
          o_.out_dir + " already holds a dataset; choose another output folder or remove it first");
    }
    if (o_.samples_per_shard == 0) throw DatasetError("--samples-per-shard must be at least 1");
    // Pass 1: every licence decision before anything is written.
    uint64_t groups = 0;
    scan(false, [&](Group& g) {
      ++groups;
      for (const auto& item : g.items) {
        if (!rule_for(item.uri) && !o_.allow_unknown_license) {
          throw DatasetError(
              "no licence for " + item.uri + ": add an entry whose path is a prefix of it to " +
              (o_.sources_file.empty() ? std::string("a --sources file") : o_.sources_file) +
              ", or pass --allow-unknown-license to mark it unknown");
        }
      }
    });
    if (groups == 0) {
      throw DatasetError("no text, image or audio files under " + o_.source_dir +
                         " (looked for .txt .md .rst .json .jsonl .png .jpg .jpeg .wav .flac .ogg, "
                         "and in .tar files)");
    }
    const bool created = !fs::exists(o_.out_dir);
    fs::create_directories(o_.out_dir);
    try {
      return write_all(manifest_path);
    } catch (...) {
      for (const auto& p : written_) fs::remove(p);
      if (created) fs::remove_all(o_.out_dir);
      throw;
    }
  }

 private:
  DatasetSummary write_all(const std::string& manifest_path) {
    data::Manifest manifest;
    manifest.set_format_version(kManifestFormatVersion);
    manifest.set_tokenizer(tokenizer_->identity());
    const auto sp = tokenizer_->special();
    auto* special = manifest.mutable_special();
    special->set_bos(sp.bos);
    special->set_eos(sp.eos);
    special->set_pad(sp.pad);
    special->set_image_begin(sp.image_begin);
    special->set_image_end(sp.image_end);
    special->set_audio_begin(sp.audio_begin);
    special->set_audio_end(sp.audio_end);
    special->set_vocab_size(sp.vocab_size);
    auto* modality = manifest.mutable_modality();
    modality->set_image_size(o_.image_size);
    modality->set_image_patch(o_.image_patch);
    modality->set_image_channels(3);
    modality->set_audio_frame(o_.audio_frame);
    modality->set_audio_sample_rate(o_.audio_sample_rate);

    DatasetSummary summary;
    std::unique_ptr<ShardWriter> writer;
    auto finish_shard = [&] {
      if (!writer) return;
      writer->close();
      auto* shard = manifest.mutable_shards(manifest.shards_size() - 1);
      shard->set_sha256(sha256_of_file((fs::path(o_.out_dir) / shard->path()).string()));
      shard->set_samples(writer->samples());
      shard->set_bytes(writer->bytes());
      summary.bytes += writer->bytes();
      writer.reset();
    };
    uint64_t next_id = 0;
    scan(true, [&](Group& g) {
      if (next_id % o_.samples_per_shard == 0) {
        finish_shard();
        char name[32];
        std::snprintf(name, sizeof(name), "shard-%05d.shard", manifest.shards_size());
        manifest.add_shards()->set_path(name);
        const auto path = (fs::path(o_.out_dir) / name).string();
        written_.push_back(path);
        writer = std::make_unique<ShardWriter>(path);
      }
      data::Sample sample;
      sample.set_id(next_id++);
      std::stable_sort(g.items.begin(), g.items.end(), [](const Item& a, const Item& b) {
        auto rank = [](Kind k) { return k == Kind::kImage ? 0 : k == Kind::kAudio ? 1 : 2; };
        return std::make_pair(rank(a.kind), a.ext) <
               std::make_pair(rank(b.kind), b.ext);  // chat records last, like text
      });
      std::set<std::string> licenses;
      for (const auto& item : g.items) {
        const uint32_t source_id = static_cast<uint32_t>(manifest.sources_size());
        auto* source = manifest.add_sources();
        const auto* rule = rule_for(item.uri);
        source->set_uri(item.uri);
        source->set_license(rule ? rule->license : "unknown");
        source->set_creator(rule ? rule->creator : "");
        source->set_sha256(sha256_of(item.bytes));
        licenses.insert(source->license());
        sample.add_sources(source_id);
        auto* step = source->add_lineage();
        step->set_tool("moxie data build");
        step->set_version("format " + std::to_string(kManifestFormatVersion));
        if (item.kind == Kind::kChat) {
          step->set_parameters("chat template <|role|>, tokenizer=" + tokenizer_->identity());
          for (const auto& [text, context] : chat_segments(item.bytes, item.uri)) {
            auto* text_seg = sample.add_segments()->mutable_text();
            set_text_tokens(text_seg, tokenizer_->encode(text));
            text_seg->set_context(context);
            summary.tokens += text_length(*text_seg);
          }
          continue;
        }
        auto* seg = sample.add_segments();
        if (item.kind == Kind::kText) {
          step->set_parameters("tokenizer=" + tokenizer_->identity());
          set_text_tokens(seg->mutable_text(), tokenizer_->encode(item.bytes));
          summary.tokens += text_length(seg->text());
        } else if (item.kind == Kind::kImage) {
          const bool png = item.ext == ".png";
          auto decoded = png ? decode_png(item.bytes, item.uri) : decode_jpeg(item.bytes, item.uri);
          auto* decode = source->add_lineage();
          decode->set_tool(png ? "decode" : "decode");
          decode->set_version(png ? png_version() : jpeg_version());
          decode->set_parameters("to 8-bit RGB from " + std::to_string(decoded.width) + "x" +
                                 std::to_string(decoded.height));
          auto resized = resize_square(decoded, o_.image_size);
          step->set_parameters("resize " + std::to_string(o_.image_size) + "x" +
                               std::to_string(o_.image_size) + " (box filter, stretched)");
          auto* image = seg->mutable_image();
          image->set_width(resized.width);
          image->set_height(resized.height);
          image->set_channels(resized.channels);
          image->set_pixels(resized.pixels.data(), resized.pixels.size());
          ++summary.images;
        } else {
          auto audio = decode_audio(item.bytes, item.uri);
          auto* rate = manifest.mutable_modality();
          if (rate->audio_sample_rate() == 0) rate->set_audio_sample_rate(audio.sample_rate);
          if (audio.sample_rate != rate->audio_sample_rate()) {
            throw DatasetError(item.uri + ": sample rate " + std::to_string(audio.sample_rate) +
                               " Hz differs from the dataset's " +
                               std::to_string(rate->audio_sample_rate()) +
                               " Hz; resample it (e.g. sox IN -r RATE OUT) or pass --audio-rate");
          }
          auto* decode = source->add_lineage();
          decode->set_tool("decode");
          decode->set_version(sndfile_version());
          decode->set_parameters("to mono 16-bit PCM at " + std::to_string(audio.sample_rate) +
                                 " Hz");
          step->set_parameters("audio frames of " + std::to_string(o_.audio_frame) + " samples");
          auto* clip = seg->mutable_audio();
          clip->set_sample_rate(audio.sample_rate);
          clip->set_channels(1);
          clip->set_pcm_s16le(reinterpret_cast<const char*>(audio.pcm.data()),
                              audio.pcm.size() * 2);
          ++summary.audio_clips;
        }
        // The lineage in the order applied: decode first, then moxie's step.
        if (source->lineage_size() == 2) source->mutable_lineage()->SwapElements(0, 1);
      }
      for (const auto& l : licenses) ++summary.samples_per_license[l];
      writer->append(sample, sample_positions(sample, manifest.modality()));
    });
    finish_shard();
    manifest.set_images(summary.images);
    manifest.set_audio_clips(summary.audio_clips);
    write_manifest(manifest_path, manifest);
    summary.shards = static_cast<uint64_t>(manifest.shards_size());
    summary.samples = next_id;
    return summary;
  }

  BuildOptions o_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<LicenseRule> rules_;
  std::vector<std::string> written_;
};

}  // namespace

DatasetSummary build_dataset(const BuildOptions& options) { return Builder(options).run(); }

}  // namespace moxie
