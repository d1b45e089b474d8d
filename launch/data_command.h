// `moxie data build|tokenizer|verify|inspect|provenance`: datasets on disk
// (data/dataset.h), in one process, without MPI.
#pragma once

namespace moxie::cli {

// argv as given to `moxie data SUB ...`. Returns the exit code (verify: 1 if
// a checksum differs); throws UsageError for a bad command line.
int data_command(int argc, char** argv);

}  // namespace moxie::cli
