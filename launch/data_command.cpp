// moxie data build|tokenizer|verify|inspect|provenance: the command line of
// each, handed to data/ (build, verify, describe), its summary printed.
#include "launch/data_command.h"

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/provenance.h"
#include "data/tokenizer.h"
#include "launch/cli_args.h"

namespace moxie::cli {

// moxie data build|verify|inspect: datasets on disk (data/dataset.h).
int data_command(int argc, char** argv) {
  const std::string sub = argc > 2 ? argv[2] : "";
  std::vector<std::string> positional;
  moxie::BuildOptions build;
  moxie::SentencePieceTrainOptions sp;
  std::string tokenizer;
  int64_t sample = -1, step = -1;
  bool list_all = false;
  auto u32 = [](const std::string& flag, const std::string& v) {
    return static_cast<uint32_t>(integer_arg(flag, v, 1, int64_t{1} << 24));
  };
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (sub == "build" && arg == "--sources") {
      build.sources_file = value();
    } else if (sub == "build" && arg == "--allow-unknown-license") {
      build.allow_unknown_license = true;
    } else if (sub == "build" && arg == "--samples-per-shard") {
      build.samples_per_shard =
          static_cast<uint64_t>(integer_arg(arg, value(), 1, int64_t{1} << 32));
    } else if (sub == "build" && arg == "--tokenizer") {
      build.tokenizer = value();
    } else if (sub == "build" && arg == "--image-size") {
      build.image_size = u32(arg, value());
    } else if (sub == "build" && arg == "--image-patch") {
      build.image_patch = u32(arg, value());
    } else if (sub == "build" && arg == "--audio-frame") {
      build.audio_frame = u32(arg, value());
    } else if (sub == "build" && arg == "--audio-rate") {
      build.audio_sample_rate = u32(arg, value());
    } else if (sub == "tokenizer" && arg == "--vocab-size") {
      sp.vocab_size = static_cast<int32_t>(u32(arg, value()));
    } else if (sub == "tokenizer" && arg == "--model-type") {
      sp.model_type = value();
    } else if (sub == "inspect" && arg == "--sample") {
      sample = rank_arg(arg, value());
    } else if (sub == "inspect" && arg == "--tokenizer") {
      tokenizer = value();
    } else if (sub == "provenance" && arg == "--step") {
      step = rank_arg(arg, value());
    } else if (sub == "provenance" && arg == "--all") {
      list_all = true;
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option '" + arg + "' for 'moxie data " + sub + "'");
    } else {
      positional.push_back(arg);
    }
  }
  if (sub == "build") {
    if (positional.size() != 2) {
      throw UsageError(
          "usage: moxie data build SOURCE_DIR OUT_DIR [--sources FILE] "
          "[--allow-unknown-license] [--samples-per-shard N]");
    }
    build.source_dir = positional[0];
    build.out_dir = positional[1];
    std::cout << "moxie data build: " << moxie::kSymlinkPolicy << "\n";
    const auto s = moxie::build_dataset(build);
    std::cout << "built " << build.out_dir << ": " << s.samples << " samples, " << s.tokens
              << " tokens, " << s.images << " images, " << s.audio_clips << " audio clips, "
              << s.shards << " shards, " << s.bytes << " bytes\n";
    for (const auto& [license, n] : s.samples_per_license) {
      std::cout << "  " << license << ": " << n << " samples\n";
    }
    return 0;
  }
  if (sub == "verify" || sub == "inspect") {
    if (positional.size() != 1) throw UsageError("usage: moxie data " + sub + " DATASET_DIR");
    if (sub == "inspect") {
      std::cout << moxie::describe_dataset(positional[0]);
      if (sample >= 0) {
        std::cout << moxie::describe_sample(positional[0], static_cast<uint64_t>(sample),
                                            tokenizer);
      }
      return 0;
    }
    moxie::DatasetSummary s;
    const auto problems = moxie::verify_dataset(positional[0], &s);
    for (const auto& p : problems) std::cerr << "moxie: " << p << "\n";
    std::cout << positional[0] << ": " << s.shards << " shards, " << s.samples << " samples: "
              << (problems.empty() ? "every checksum matches"
                                   : std::to_string(problems.size()) + " problem(s)")
              << "\n";
    return problems.empty() ? 0 : 1;
  }
  if (sub == "tokenizer") {
    if (positional.size() < 2) {
      throw UsageError(
          "usage: moxie data tokenizer OUT_PREFIX TEXT_FILE... [--vocab-size N] "
          "[--model-type unigram|bpe]");
    }
    sp.model_prefix = positional[0];
    sp.inputs.assign(positional.begin() + 1, positional.end());
    moxie::train_sentencepiece(sp);
    const auto tok = moxie::load_tokenizer(sp.model_prefix + ".model");
    std::cout << "wrote " << sp.model_prefix << ".model (" << tok->special().vocab_size << " ids, "
              << tok->identity() << ")\n";
    return 0;
  }
  if (sub == "provenance") {
    if (positional.size() != 1 || step < 1) {
      throw UsageError("usage: moxie data provenance RUN_DIR --step N [--all]");
    }
    std::cout << moxie::provenance_report(positional[0], step, list_all);
    return 0;
  }
  throw UsageError("'moxie data' takes build, tokenizer, verify, inspect or provenance (got '" +
                   sub + "')");
}

}  // namespace moxie::cli
