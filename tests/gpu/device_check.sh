#!/usr/bin/env bash
# Everything issue 6 measures on a lent GPU machine, as one prepared run:
# build, the CUDA kernel tests (float32 and bf16 against ATen), the NCCL
# communicator on one rank, the gpu-1b loss curve against the CPU fp32 run,
# the kernel benchmark, the matmul peak, and moxie vs Hugging Face's
# MixtralForCausalLM on configs/gpu-1b.yaml. Logs go to OUT.
#
# That machine has CUDA, NCCL and LibTorch (python3's torch) but none of
# moxie's Debian libraries: run tests/gpu/fetch_debs.sh here first, then
#   run(command="bash tests/gpu/device_check.sh $OUT", carry=[".debs", ".corpus"])
# The packages are unpacked into /tmp/deps, never into /.
# Usage: bash tests/gpu/device_check.sh [OUT] [STEPS...]  (default: all steps)
#   steps: build kernels nccl loss bench peak hf
set -uo pipefail
out=${1:-/tmp/out}
shift || true
steps=${*:-build kernels nccl loss bench peak hf}
mkdir -p "$out"
want() { [[ " $steps " == *" $1 "* ]]; }
log() { echo "=== $* ($(date +%T))" | tee -a "$out/summary.txt"; }

deps=/tmp/deps
lib=$deps/usr/lib/x86_64-linux-gnu
if [ ! -d $deps/usr ]; then
  mkdir -p $deps
  for f in .debs/*.deb; do dpkg -x "$f" $deps; done
fi
export OPAL_PREFIX=$deps/usr PATH=$deps/usr/bin:$PATH
export LD_LIBRARY_PATH=$lib/openmpi/lib:$lib:${LD_LIBRARY_PATH:-}
export PKG_CONFIG_PATH=$lib/pkgconfig:$deps/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$deps
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
mkdir -p .data && { [ -e .data/text ] || tar -xzf .corpus/text.tar.gz -C .data; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.txt"
build=/tmp/build

if want build; then
  log build
  torch_prefix=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  cmake -G Ninja -S . -B $build -DCMAKE_BUILD_TYPE=Release -DMOXIE_TESTS=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DOPENSSL_ROOT_DIR=$deps/usr -DPKG_CONFIG_EXECUTABLE=$deps/usr/bin/pkgconf \
    -DMPI_CXX_COMPILER=$deps/usr/bin/mpicxx -DMPI_CXX_HEADER_DIR=$lib/openmpi/include \
    -DMPI_CXX_ADDITIONAL_INCLUDE_DIRS=$lib/openmpi/include/openmpi \
    -DMPI_CXX_LIB_NAMES="mpi_cxx;mpi" -DMPI_mpi_LIBRARY=$lib/openmpi/lib/libmpi.so \
    -DMPI_mpi_cxx_LIBRARY=$lib/openmpi/lib/libmpi_cxx.so \
    -DProtobuf_PROTOC_EXECUTABLE=$deps/usr/bin/protoc -DMOXIE_PYTHON="$(command -v python3)" \
    >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
  grep "moxie:" "$out/configure.log"
  ninja -C $build -j16 moxie test_kernels test_nccl bench_kernels >"$out/build.log" 2>&1 ||
    { grep -B2 -A12 "error" "$out/build.log" | head -80; exit 1; }
fi
run() {  # run NAME TIMEOUT COMMAND...: output to OUT/NAME.log, its tail and exit code here
  local name=$1 limit=$2
  shift 2
  log "$name: $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -25 "$out/$name.log"
  echo "exit $rc" | tee -a "$out/summary.txt"
}
want kernels && run kernels 300 $build/tests/test_kernels -s -r compact
want nccl && run nccl 120 mpirun --allow-run-as-root -n 1 $build/tests/test_nccl
want loss && run loss_curve 900 python3 tests/gpu/loss_curve.py $build/moxie "$PWD"
want bench && run bench_kernels 300 $build/tests/bench/bench_kernels
want peak && run matmul_peak 120 python3 tests/bench/matmul_peak.py --device cuda
want hf && run train_vs_hf 900 python3 tests/bench/train_vs_hf.py --config configs/gpu-1b.yaml \
  --moxie $build/moxie --steps 10 --warmup 3 --repeats 1 --set moe.z_loss_coef=0
log done
