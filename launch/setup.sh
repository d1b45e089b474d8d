#!/usr/bin/env bash
# Installs what moxie needs and is missing, and is quick when nothing is:
#   - Debian packages: compilers' companions (Ninja, ccache), Open MPI,
#     yaml-cpp, Protobuf, Catch2, nlohmann-json, the media and tokenizer
#     libraries (libpng, libjpeg, libsndfile, libarchive, SentencePiece),
#     python3-doc, whose documentation sources are the demo's training text,
#     and espeak-ng, ImageMagick and DejaVu fonts for the multimodal example;
#   - a git-ignored virtual environment .venv with torch==2.11.0 (LibTorch
#     comes from that wheel) and, with --tests, transformers, peft and safetensors
#     for the Hugging Face parity test and benchmarks;
#   - with --tests, clang-format (the tree is checked against .clang-format);
#   - .data/text: the demo corpus (the Python 3 documentation's reStructuredText).
# Usage: launch/setup.sh [--tests]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TORCH_VERSION=2.11.0
TRANSFORMERS_VERSION=5.23.0
PEFT_VERSION=0.21.2      # Hugging Face peft: the LoRA test loads exported adapters with it
DEBIAN_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libopenmpi-dev openmpi-bin
  libyaml-cpp-dev libprotobuf-dev protobuf-compiler
  catch2 nlohmann-json3-dev libssl-dev
  libpng-dev libjpeg-dev libsndfile1-dev libarchive-dev libsentencepiece-dev
  espeak-ng imagemagick fonts-dejavu-core
  python3-venv python3-doc
)

with_tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) with_tests=1 ;;
    *) echo "setup.sh: unknown option '$arg' (known: --tests)" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*"; }

# --- Debian packages -----------------------------------------------------------
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Python virtual environment with torch ---------------------------------------
py=.venv/bin/python
if [ ! -x "$py" ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
have_version() {  # have_version MODULE VERSION
  "$py" - "$1" "$2" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version(sys.argv[1]) == sys.argv[2] else 1)
PY
}
if ! have_version torch "$TORCH_VERSION"; then
  say "installing torch==$TORCH_VERSION into .venv (pip's cache makes a reinstall short)"
  "$py" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
fi
if ((with_tests)); then
  if ! command -v clang-format >/dev/null; then  # the clang_format test checks the tree with it
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    say "installing clang-format"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang-format
  fi
  if ! command -v clang++ >/dev/null || ! dpkg -s libclang-rt-dev >/dev/null 2>&1; then
    # the fuzz_*_60s tests build libFuzzer targets with clang (tests/fuzz/run.sh)
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    say "installing clang and libclang-rt-dev (libFuzzer)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang libclang-rt-dev
  fi
  if ! have_version transformers "$TRANSFORMERS_VERSION" || ! have_version peft "$PEFT_VERSION" ||
     ! have_version safetensors "$("$py" -c 'import importlib.metadata as m; print(m.version("safetensors"))' 2>/dev/null || echo none)"; then
    say "installing transformers==$TRANSFORMERS_VERSION, peft==$PEFT_VERSION and safetensors into .venv"
    "$py" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" \
      "peft==$PEFT_VERSION" safetensors pyyaml
  fi
fi

# --- demo corpus ------------------------------------------------------------------
# Real text from an installed package, never text written for the project.
if [ ! -e .data/text ]; then
  src=$(ls -d /usr/share/doc/python3.*/html/_sources 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$src" ]; then
    echo "setup.sh: python3-doc is installed but no /usr/share/doc/python3.*/html/_sources was found" >&2
    exit 1
  fi
  mkdir -p .data
  ln -s "$src" .data/text
  say "corpus: .data/text -> $src"
fi
say "ready"
