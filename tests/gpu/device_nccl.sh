#!/usr/bin/env bash
# Runs moxie's NCCL communicator test on a lent GPU machine (the workplace's
# device tool; see tests/bench/RESULTS.md). That machine has CUDA, NCCL and
# LibTorch (python3's torch) but no Open MPI, yaml-cpp, Protobuf, Catch2 or
# nlohmann-json: Debian's packages travel in .debs (git-ignored; fetch with
#   apt-get download libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common
#     libpmix2 libhwloc15 libevent-2.1-7 libevent-core-2.1-7
#     libevent-pthreads-2.1-7 libfabric1 libucx0 libpsm2-2 libpsm-infinipath1
#     libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libyaml-cpp0.7
#     libyaml-cpp-dev libprotobuf32 libprotobuf-dev protobuf-compiler
#     libprotoc32 catch2 nlohmann-json3-dev libmunge2 libltdl7 libnuma1
# ) and are unpacked into /tmp/deps, never into /.
# Usage (from the repository root there): bash tests/gpu/device_nccl.sh [OUT]
set -uo pipefail
out=${1:-/tmp/out}
mkdir -p "$out"
deps=/tmp/deps
lib=$deps/usr/lib/x86_64-linux-gnu
mkdir -p $deps
for f in .debs/*.deb; do dpkg -x "$f" $deps; done
export OPAL_PREFIX=$deps/usr
export PATH=$deps/usr/bin:$PATH
export LD_LIBRARY_PATH=$lib/openmpi/lib:$lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.txt"
torch_prefix=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
cmake -G Ninja -S . -B /tmp/build -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DMPI_CXX_COMPILER=$deps/usr/bin/mpicxx \
  -DMPI_CXX_HEADER_DIR=$lib/openmpi/include \
  -DMPI_CXX_ADDITIONAL_INCLUDE_DIRS=$lib/openmpi/include/openmpi \
  -DMPI_CXX_LIB_NAMES="mpi_cxx;mpi" -DMPI_mpi_LIBRARY=$lib/openmpi/lib/libmpi.so \
  -DMPI_mpi_cxx_LIBRARY=$lib/openmpi/lib/libmpi_cxx.so \
  -DProtobuf_PROTOC_EXECUTABLE=$deps/usr/bin/protoc \
  -DMOXIE_PYTHON=$(command -v python3) 2>&1 | tee "$out/configure.log" | grep -E "moxie:|Error|error" 
ninja -C /tmp/build -j16 test_nccl test_mpi_communicator 2>&1 | tail -30 | tee "$out/build.log"
test_nccl=$(find /tmp/build -name test_nccl -type f | head -1)
[ -x "$test_nccl" ] || { echo "test_nccl was not built"; exit 1; }
run() {
  echo "+ $*"
  timeout 120 "$@" 2>&1 | tee -a "$out/test_nccl.log" | tail -25
  echo "exit ${PIPESTATUS[0]}"
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
# One rank on the one GPU, under mpirun and as an MPI singleton.
run mpirun --allow-run-as-root --oversubscribe -n 1 "$test_nccl"
run "$test_nccl"
# Two ranks on one GPU: NCCL normally refuses (one rank per GPU); recorded as seen.
NCCL_DEBUG=WARN run mpirun --allow-run-as-root --oversubscribe -n 2 "$test_nccl"
