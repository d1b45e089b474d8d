// The `moxie` command: finds the subcommand's family and hands off to it.
//   moxie train CONFIG [--set key.path=value]...     launch/train_command.h
//   moxie config CONFIG [--set key.path=value]...   print the resolved config
//   moxie launch -n N CONFIG ...                     launch/launch_command.h
//   moxie plan CONFIG --world N ...                  launch/plan_command.h
//   moxie data build|tokenizer|verify|inspect|provenance  launch/data_command.h
//   moxie export|import|generate                     launch/model_command.h
// Under a launcher (mpirun, mpiexec, srun) every rank runs this; MPI starts
// only then. Exit codes: 0 success, 1 runtime failure, 2 bad command line,
// config or layout. A runtime failure on any rank is printed with the rank
// and ends the whole job at once, so no rank waits forever in a collective.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "core/common/allocator.h"
#include "core/config/config.h"
#include "launch/cli_args.h"
#include "launch/data_command.h"
#include "launch/launch_command.h"
#include "launch/model_command.h"
#include "launch/plan_command.h"
#include "launch/train_command.h"
#include "parallel/mpi_communicator.h"
#include "parallel/parallel_dims.h"

namespace {

using moxie::cli::UsageError;

// Unformatted, so that the table reads as it prints.
// clang-format off
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
    "       [--materialize-blocks N]            build only the first N blocks; count the rest\n"
    "                                           from a built block of the same kind\n"
    "  data build SRC OUT [--sources F] [--allow-unknown-license] [--samples-per-shard N]\n"
    "       [--tokenizer byte|MODEL] [--image-size PX] [--image-patch PX] [--audio-frame N]\n"
    "       [--audio-rate HZ]                   text, images and audio (a folder, WebDataset\n"
    "                                           .tar files) to a checksummed, licensed dataset;\n"
    "                                           links in SRC are followed to files inside SRC,\n"
    "                                           a link out of SRC is refused by name\n"
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
// clang-format on

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
      return command == "data" ? moxie::cli::data_command(argc, argv)
                               : moxie::cli::model_command(command, argc, argv);
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
    if (command == "plan") return moxie::cli::plan_command(argc, argv);
    if (command == "train" || command == "config") {
      return moxie::cli::train_command(command, argc, argv, {mpi != nullptr, rank, world_size});
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
                << "\n"
                << std::flush;
      moxie::MpiRuntime::abort_job(1);
    }
    std::cerr << "moxie: error: " << e.what() << "\n";
    return 1;
  }
}
