// The `moxie` command: parses the subcommand line and hands off to core/.
//   moxie train CONFIG [--set key.path=value]...
//   moxie config CONFIG [--set key.path=value]...   print the resolved config
// Under a launcher (mpirun, mpiexec, srun) every rank runs this; MPI starts
// only then. Exit codes: 0 success, 1 runtime failure, 2 bad command line,
// config or layout. A runtime failure on any rank is printed with the rank
// and ends the whole job at once, so no rank waits forever in a collective.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/checkpoint.h"
#include "core/hf_interop.h"
#include "data/byte_tokenizer.h"
#include "core/config.h"
#include "core/materialize.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/provenance.h"
#include "data/tokenizer.h"
#include "core/plan.h"
#include "core/trainer.h"
#include "launch/launch_command.h"
#include "parallel/mpi_communicator.h"

namespace {

const char* kUsage =
    "usage: moxie <command> [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set key.path=value]... [--resume [latest|PATH]]\n"
    "                                           train a model from a YAML config (resuming\n"
    "                                           from a checkpoint of train.run_dir or PATH)\n"
    "  config CONFIG [--set key.path=value]...  validate and print the resolved config\n"
    "  launch -n N CONFIG [--set ...]...        run `train` on N local ranks through mpirun\n"
    "  plan CONFIG --world N [--device-memory GB] [--param-bytes 2|4] [--set ...]...\n"
    "       [--rank R | --materialize-rank R]    parameters, per-rank memory, FLOPs, traffic;\n"
    "                                           --materialize-rank builds and runs rank R's\n"
    "                                           shard here and measures it against the plan\n"
    "  data build SRC OUT [--sources F] [--allow-unknown-license] [--samples-per-shard N]\n"
    "       [--tokenizer byte|MODEL] [--image-size PX] [--image-patch PX] [--audio-frame N]\n"
    "       [--audio-rate HZ]                   text, images and audio (a folder, WebDataset\n"
    "                                           .tar files) to a checksummed, licensed dataset\n"
    "  data tokenizer OUT_PREFIX FILE... [--vocab-size N] [--model-type unigram|bpe]\n"
    "                                           train a SentencePiece model (OUT_PREFIX.model)\n"
    "  data verify DIR                          every shard and record checksum\n"
    "  data inspect DIR [--sample N] [--tokenizer MODEL]\n"
    "                                           manifest summary, licences, one sample\n"
    "  data provenance RUN_DIR --step N [--all] sources and licences trained on up to step N\n"
    "  export CHECKPOINT --hf OUT [--arch mixtral|qwen2_moe] [--merge-lora | --peft DIR]\n"
    "                                           weights as a Hugging Face MixtralForCausalLM or\n"
    "                                           Qwen2MoeForCausalLM folder (default: Mixtral when it\n"
    "                                           can express the model); LoRA adapters folded in, or\n"
    "                                           written for peft beside the base weights\n"
    "  import --hf DIR OUT_RUN [--set ...]      a Hugging Face Mixtral or Qwen2-MoE folder as a\n"
    "                                           weights-only checkpoint; train OUT_RUN/config.yaml\n"
    "  generate CHECKPOINT (--prompt TEXT | --tokens IDS) [--max-new N] [--temperature T]\n"
    "       [--top-p P] [--seed S] [--no-cache] continue a prompt (byte tokens; IDS: 1,2,3)\n"
    "  help                                     this text\n"
    "\n"
    "example:\n"
    "  moxie train configs/tiny.yaml --set train.steps=100 --set optim.lr=1e-3\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Invocation {
  std::string config_path;
  std::vector<std::string> overrides;
  moxie::PlanOptions plan;  // moxie plan only
  bool world_given = false;
  bool materialize = false;  // moxie plan --materialize-rank R
};

int64_t rank_arg(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 0) {
    throw UsageError(flag + " " + value + ": expected a rank, 0 or more");
  }
  return static_cast<int64_t>(v);
}

double number_arg(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !(v > 0)) {
    throw UsageError(flag + " " + value + ": expected a positive number");
  }
  return v;
}

Invocation parse_args(const std::string& command, int argc, char** argv) {
  Invocation inv;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--set") {
      if (i + 1 >= argc) throw UsageError("--set needs a value: --set key.path=value");
      inv.overrides.push_back(argv[++i]);
    } else if (arg.rfind("--set=", 0) == 0) {
      inv.overrides.push_back(arg.substr(6));
    } else if (command == "train" && arg == "--resume") {
      // --resume [latest|PATH]: the value is optional.
      auto is_config = [](const std::string& a) {
        const auto ext = std::filesystem::path(a).extension().string();
        return ext == ".yaml" || ext == ".yml";
      };
      const bool has_value = i + 1 < argc && argv[i + 1][0] != '-' && !is_config(argv[i + 1]);
      inv.overrides.push_back("train.resume=" + std::string(has_value ? argv[++i] : "latest"));
    } else if (command == "plan" && (arg == "--world" || arg == "--device-memory" ||
                                     arg == "--param-bytes")) {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      const double v = number_arg(arg, argv[++i]);
      if (arg == "--world") {
        inv.plan.world = static_cast<int64_t>(v);
        inv.world_given = true;
      } else if (arg == "--device-memory") {
        inv.plan.device_bytes = v * 1e9;
      } else {
        if (v != 2 && v != 4) throw UsageError("--param-bytes takes 2 (bf16) or 4 (fp32)");
        inv.plan.param_bytes = static_cast<int64_t>(v);
      }
    } else if (command == "plan" && (arg == "--rank" || arg == "--materialize-rank")) {
      if (i + 1 >= argc) throw UsageError(arg + " needs a rank");
      inv.plan.rank = rank_arg(arg, argv[++i]);
      inv.materialize = inv.materialize || arg == "--materialize-rank";
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option '" + arg + "' for 'moxie " + command + "'");
    } else if (inv.config_path.empty()) {
      inv.config_path = arg;
    } else {
      throw UsageError("unexpected argument '" + arg + "': 'moxie " + command +
                       "' takes one CONFIG file");
    }
  }
  if (inv.config_path.empty()) {
    throw UsageError("'moxie " + command + "' needs a CONFIG file, e.g. configs/tiny.yaml");
  }
  return inv;
}

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
    const int64_t n = number_arg(flag, v);
    if (n < 1 || n > (int64_t{1} << 24)) throw UsageError(flag + " " + v + " is out of range");
    return static_cast<uint32_t>(n);
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
      build.samples_per_shard = static_cast<uint64_t>(number_arg(arg, value()));
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
      throw UsageError("usage: moxie data build SOURCE_DIR OUT_DIR [--sources FILE] "
                       "[--allow-unknown-license] [--samples-per-shard N]");
    }
    build.source_dir = positional[0];
    build.out_dir = positional[1];
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
        std::cout << moxie::describe_sample(positional[0], static_cast<uint64_t>(sample), tokenizer);
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
      throw UsageError("usage: moxie data tokenizer OUT_PREFIX TEXT_FILE... [--vocab-size N] "
                       "[--model-type unigram|bpe]");
    }
    sp.model_prefix = positional[0];
    sp.inputs.assign(positional.begin() + 1, positional.end());
    moxie::train_sentencepiece(sp);
    const auto tok = moxie::load_tokenizer(sp.model_prefix + ".model");
    std::cout << "wrote " << sp.model_prefix << ".model (" << tok->special().vocab_size
              << " ids, " << tok->identity() << ")\n";
    return 0;
  }
  if (sub == "provenance") {
    if (positional.size() != 1 || step < 1) {
      throw UsageError("usage: moxie data provenance RUN_DIR --step N [--all]");
    }
    std::cout << moxie::provenance_report(positional[0], step, list_all);
    return 0;
  }
  throw UsageError("'moxie data' takes build, tokenizer, verify, inspect or provenance (got '" + sub + "')");
}

// A real number in [lo, hi] (lo excluded with open_lo), else a UsageError
// saying `expected`.
double real_arg(const std::string& flag, const std::string& value, double lo, bool open_lo, double hi,
                const std::string& expected) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end || v < lo || (open_lo && v == lo) || v > hi) {
    throw UsageError(flag + " " + value + ": expected " + expected);
  }
  return v;
}

// Generated bytes need not be UTF-8: each byte of an invalid sequence
// becomes U+FFFD, so that the output is text a terminal or a pipe can take.
std::string valid_utf8(const std::string& in) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= n && !(len == 2 && c < 0xC2);
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len == 3) {
      const unsigned cp = ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6);
      ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);  // not overlong, not a surrogate
    } else if (ok && len == 4) {
      const unsigned cp = ((c & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12);
      ok = cp >= 0x10000 && cp <= 0x10FFFF;
    }
    if (ok) {
      out.append(in, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

// moxie export | import | generate: one process, no MPI.
int model_command(const std::string& command, int argc, char** argv) {
  std::vector<std::string> positional, overrides;
  std::string hf, arch, peft, prompt, tokens, logits_path;
  bool merge_lora = false;
  moxie::GenerateOptions gen;
  bool have_prompt = false, have_tokens = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if ((command == "export" || command == "import") && arg == "--hf") {
      hf = value();
    } else if (command == "export" && arg == "--merge-lora") {
      merge_lora = true;
    } else if (command == "export" && arg == "--peft") {
      peft = value();
    } else if (command == "export" && arg == "--arch") {
      arch = value();
      if (arch != "mixtral" && arch != "qwen2_moe") {
        throw UsageError("--arch '" + arch + "' is not one moxie writes; use mixtral or qwen2_moe");
      }
    } else if (command == "import" && arg == "--set") {
      overrides.push_back(value());
    } else if (command == "generate" && arg == "--prompt") {
      prompt = value();
      have_prompt = true;
    } else if (command == "generate" && arg == "--tokens") {
      tokens = value();
      have_tokens = true;
    } else if (command == "generate" && arg == "--max-new") {
      gen.max_new = static_cast<int64_t>(number_arg(arg, value()));
    } else if (command == "generate" && arg == "--temperature") {
      gen.temperature = real_arg(arg, value(), 0, false, 1e9, "a number >= 0");
    } else if (command == "generate" && arg == "--top-p") {
      gen.top_p = real_arg(arg, value(), 0, true, 1, "a number in (0, 1]");
    } else if (command == "generate" && arg == "--logits") {
      logits_path = value();  // the prompt's logits [S, V], float32 safetensors "logits"
    } else if (command == "generate" && arg == "--no-cache") {
      gen.use_cache = false;
    } else if (command == "generate" && arg == "--seed") {
      gen.seed = static_cast<uint64_t>(rank_arg(arg, value()));
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option '" + arg + "' for 'moxie " + command + "'");
    } else {
      positional.push_back(arg);
    }
  }
  if (command == "export") {
    if (positional.size() != 1 || hf.empty()) {
      throw UsageError("usage: moxie export CHECKPOINT --hf OUT_DIR [--arch mixtral|qwen2_moe] [--merge-lora | --peft DIR]");
    }
    auto loaded = moxie::load_model(positional[0]);
    const bool adapters = loaded.config.lora.rank > 0;
    if (adapters && merge_lora == !peft.empty()) {
      throw UsageError(merge_lora ? "use --merge-lora or --peft DIR, not both"
                                  : "this checkpoint has LoRA adapters: add --merge-lora to fold them into the "
                                    "exported weights, or --peft DIR to export the base weights and the adapters "
                                    "for Hugging Face peft");
    }
    if (!adapters && (merge_lora || !peft.empty())) {
      throw UsageError(std::string(merge_lora ? "--merge-lora" : "--peft") + ": this checkpoint has no LoRA adapters");
    }
    if (merge_lora) loaded.model->merge_lora();
    const auto as = arch.empty()         ? moxie::hf_arch_for(loaded.config.model, loaded.config.moe)
                    : arch == "mixtral" ? moxie::HfArch::kMixtral
                                        : moxie::HfArch::kQwen2Moe;
    const bool made = !std::filesystem::exists(hf);
    std::filesystem::create_directories(hf);
    try {
      moxie::write_hf_config(loaded.config.model, loaded.config.moe, as, hf + "/config.json");
      moxie::save_hf_safetensors(loaded.model, hf + "/model.safetensors", as);
      if (!peft.empty()) moxie::write_peft_adapters(loaded.model, loaded.config.lora, hf, peft);
    } catch (...) {
      if (made) std::filesystem::remove_all(hf);  // no half-written folder
      throw;
    }
    std::cout << "exported step " << loaded.step << " to " << hf << " (config.json, model.safetensors: "
              << moxie::hf_class_name(as) << ")\n";
    return 0;
  }
  if (command == "import") {
    if (positional.size() != 1 || hf.empty()) {
      throw UsageError("usage: moxie import --hf HF_DIR OUT_RUN_DIR [--set key=value]...");
    }
    const auto hf_config = moxie::read_hf_config(hf + "/config.json");
    moxie::Config config = moxie::parse_config("", overrides);
    config.model = hf_config.model;
    config.moe = hf_config.moe;
    moxie::validate(config);
    moxie::CausalLM model(config.model, config.moe);
    moxie::load_hf_safetensors(model, hf, hf_config.arch);
    const auto dir = moxie::write_weights_checkpoint(model, config, positional[0]);
    std::cout << "imported " << hf << " as " << dir << "; fine-tune with: moxie train " << positional[0]
              << "/config.yaml (at any layout)\n";
    return 0;
  }
  // generate
  if (positional.size() != 1 || have_prompt == have_tokens) {
    throw UsageError("usage: moxie generate CHECKPOINT (--prompt TEXT | --tokens IDS) [--max-new N] "
                     "[--temperature T] [--top-p P] [--seed S] [--no-cache]");
  }
  auto loaded = moxie::load_model(positional[0]);
  std::vector<int64_t> ids;
  if (have_prompt) {
    ids.push_back(moxie::ByteTokenizer::kBos);
    for (int32_t t : moxie::ByteTokenizer().encode(prompt)) ids.push_back(t);
    gen.stop_token = moxie::ByteTokenizer::kEos;
  } else {
    std::stringstream s(tokens);
    std::string item;
    while (std::getline(s, item, ',')) ids.push_back(static_cast<int64_t>(rank_arg("--tokens", item)));
  }
  if (ids.empty()) throw UsageError("--tokens: give at least one id, e.g. --tokens 256,72,105");
  for (auto id : ids) {
    if (id >= loaded.config.model.vocab_size) {
      throw UsageError("--tokens: id " + std::to_string(id) + " is outside the model's vocabulary of " +
                       std::to_string(loaded.config.model.vocab_size));
    }
  }
  const size_t prompt_len = ids.size();
  if (!logits_path.empty()) {
    torch::NoGradGuard no_grad;
    auto logits = loaded.model->forward(torch::tensor(ids, torch::kLong).unsqueeze(0)).logits[0].to(torch::kFloat).contiguous();
    moxie::safetensors::write(logits_path, {{"logits", moxie::safetensors::DType::F32, logits.sizes().vec(),
                                             logits.data_ptr(), static_cast<uint64_t>(logits.numel() * 4)}});
  }
  const auto out = moxie::generate(loaded.model, ids, gen);
  std::cout << "tokens:";
  for (size_t i = prompt_len; i < out.size(); ++i) std::cout << (i == prompt_len ? " " : ",") << out[i];
  std::cout << "\n";
  if (loaded.config.model.vocab_size <= moxie::ByteTokenizer::kVocabSize + 8) {  // byte tokens (and spare ids)
    std::vector<int32_t> gen_ids;
    for (auto it = out.begin() + static_cast<int64_t>(prompt_len); it != out.end(); ++it) {
      if (*it < moxie::ByteTokenizer::kVocabSize) gen_ids.push_back(static_cast<int32_t>(*it));
    }
    std::cout << "text: " << valid_utf8(moxie::ByteTokenizer().decode(gen_ids)) << "\n";
  }
  return 0;
}

// Launchers leave these in every rank's environment: Open MPI (mpirun),
// PMIx (Open MPI 4+, srun --mpi=pmix), PMI (srun --mpi=pmi2, MPICH).
bool under_mpi_launcher() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(var)) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  moxie::keep_freed_memory_for_reuse();
  const std::string command = argv[1];
  if (command == "launch") {
    try {
      return moxie::launch(argc, argv);  // returns only on error
    } catch (const std::exception& e) {
      std::cerr << "moxie: " << e.what() << "\n";
      return 2;
    }
  }
  // One process, no MPI: datasets, export, import, generation.
  if (command == "data" || command == "export" || command == "import" || command == "generate") {
    try {
      return command == "data" ? data_command(argc, argv) : model_command(command, argc, argv);
    } catch (const UsageError& e) {
      std::cerr << "moxie: " << e.what() << "\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "moxie: " << e.what() << "\n";
      return 1;
    }
  }
  std::unique_ptr<moxie::MpiRuntime> mpi;
  int rank = 0, world_size = 1;
  try {
    if (under_mpi_launcher()) {
      mpi = std::make_unique<moxie::MpiRuntime>(&argc, &argv);
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    }
    if (command == "plan") {
      const auto inv = parse_args(command, argc, argv);
      if (!inv.world_given) throw UsageError("'moxie plan' needs --world N, the number of ranks");
      const auto config = moxie::load_config(inv.config_path, inv.overrides);
      if (inv.plan.rank >= inv.plan.world) {
        throw UsageError("rank " + std::to_string(inv.plan.rank) + " is not in a job of --world " +
                         std::to_string(inv.plan.world) + " ranks");
      }
      const auto plan = moxie::make_plan(config, inv.plan);
      std::cout << moxie::describe(config, inv.plan, plan);
      if (inv.materialize) {
        const auto m = moxie::materialize_rank(config, inv.plan, std::cout);
        std::cout << moxie::compare_with_plan(plan, m);
        return m.shape_mismatches == 0 ? 0 : 1;
      }
      return 0;
    }
    if (command == "train" || command == "config") {
      const auto inv = parse_args(command, argc, argv);
      const auto config = moxie::load_config(inv.config_path, inv.overrides);
      if (command == "config") {
        if (rank == 0) std::cout << moxie::to_yaml(config);
        return 0;
      }
      auto groups = moxie::single_process_groups();
      if (mpi) {
        const moxie::ParallelDims dims = moxie::layout_of(config, world_size);
        groups = moxie::make_process_groups(dims, moxie::MpiCommunicator(MPI_COMM_WORLD),
                                            config.train.device == moxie::DeviceKind::kCuda
                                                ? moxie::GroupDevice::kCuda
                                                : moxie::GroupDevice::kCpu);
      }
      moxie::Trainer trainer(config, std::move(groups), std::cout);
      trainer.run();
      return 0;
    }
    throw UsageError("unknown command '" + command + "'; run 'moxie help'");
  } catch (const UsageError& e) {
    // The same on every rank: one rank says it.
    if (rank == 0) std::cerr << "moxie: " << e.what() << "\n";
    return 2;
  } catch (const moxie::ConfigError& e) {
    if (rank == 0) std::cerr << "moxie: config error: " << e.what() << "\n";
    return 2;
  } catch (const moxie::LayoutError& e) {
    if (rank == 0) std::cerr << "moxie: layout error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    if (world_size > 1) {
      std::cerr << "moxie: error on rank " << rank << " of " << world_size << ": " << e.what()
                << "\n" << std::flush;
      moxie::MpiRuntime::abort_job(1);
    }
    std::cerr << "moxie: error: " << e.what() << "\n";
    return 1;
  }
}
