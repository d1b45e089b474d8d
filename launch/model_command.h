// `moxie export | import | generate`: a checkpoint to and from Hugging Face
// folders, and text continued from a checkpoint; in one process, without MPI.
#pragma once

#include <string>

namespace moxie::cli {

// argv as given to `moxie COMMAND ...`, command one of export, import,
// generate. Returns the exit code; throws UsageError for a bad command line.
int model_command(const std::string& command, int argc, char** argv);

}  // namespace moxie::cli
