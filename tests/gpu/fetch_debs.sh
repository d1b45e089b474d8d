#!/usr/bin/env bash
# Downloads (here, where Debian's registry is reachable) the Debian packages
# moxie builds against and that the GPU machine's image lacks, with their
# library dependencies, into .debs/ (git-ignored), for tests/gpu/device_check.sh
# to unpack there into a prefix; also packs the demo corpus into
# .corpus/text.tar.gz (a symbolic link would travel as a link). Both go in
# `carry` (about 50 MiB of the 64 allowed).
# Usage: tests/gpu/fetch_debs.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
WANT=(pkgconf libopenmpi-dev openmpi-bin libyaml-cpp-dev libprotobuf-dev protobuf-compiler catch2 nlohmann-json3-dev
      libssl-dev libpng-dev libjpeg-dev libsndfile1-dev libarchive-dev libsentencepiece-dev)
# Compilers (Open MPI's wrappers ask for one; the machine has its own) and
# the C/C++ runtime and what every image has: never carried (unpacked beside
# the image's own they would shadow it).
SKIP='^(gcc|gcc-[0-9]+|g\+\+|g\+\+-[0-9]+|cpp|cpp-[0-9]+|gfortran.*|flang.*|libflang.*|libllvm.*|libclang.*|libmlir.*|llvm.*|clang.*|binutils.*|libbinutils|libgprofng0|libctf.*|libz3.*|libperl.*|libstdc\+\+-[0-9]+-dev|libgcc-[0-9]+-dev|libgfortran-[0-9]+-dev|libobjc.*|libasan.*|libtsan.*|liblsan.*|libubsan.*|libhwasan.*|libitm.*|libquadmath.*|libcc1-.*|libisl.*|libmpc.*|libmpfr.*|libjansson.*|libatomic.*|libgomp.*|lib32.*|libx32.*|libc6|libc6-dev|libstdc\+\+6|libgcc-s1|libgcc-12-dev|gcc-12-base|libcrypt1|libcrypt-dev|linux-libc-dev|libselinux1|zlib1g|zlib1g-dev|debconf|dpkg|perl.*|python3.*|libpython3.*|tzdata|init-system-helpers|sensible-utils|libtinfo6|libbz2-1.0|liblzma5|libzstd1|libsystemd0|libudev1|libcap2|libgmp10)$'
pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
        --no-enhances "${WANT[@]}" | grep -E '^[a-z0-9]' | sed 's/:any$//' | sort -u | grep -Ev "$SKIP")
mkdir -p .debs
(cd .debs && apt-get download $pkgs >/dev/null 2>&1 || for p in $pkgs; do apt-get download "$p" >/dev/null 2>&1 || true; done)
echo "fetch_debs: $(ls .debs | wc -l) packages, $(du -sh .debs | cut -f1) in .debs/"
if [ ! -f .corpus/text.tar.gz ]; then
  mkdir -p .corpus
  tar -czhf .corpus/text.tar.gz -C .data text
  echo "fetch_debs: demo corpus packed into .corpus/text.tar.gz ($(du -sh .corpus | cut -f1))"
fi
