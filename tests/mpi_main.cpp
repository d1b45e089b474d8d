// Catch2 main for tests launched under mpiexec: MPI lives for the whole run.
// Every rank runs every test case; collectives inside them pair up across ranks.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "parallel/mpi_communicator.h"

int main(int argc, char** argv) {
  moxie::MpiRuntime mpi(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
