#!/usr/bin/env bash
# One-command install of sslreg and the OpenMMLab 2.x stack into .venv/ at the repo root.
#
#   bash tools/install.sh            # create/update .venv, install everything
#   SSLREG_BUILD_MMCV=1 bash tools/install.sh   # ignore the wheel cache, build mmcv
#
# Steps (each prints what it does; a build of minutes says so before it starts):
#   1. python -m venv .venv
#   2. torch 2.14.1 + torchvision 0.29.1
#   3. mmcv 2.1.0: the cached wheel in ../shared/wheels when it fits this torch, Python
#      and platform; otherwise the PyPI sdist, with -std=c++17 -> -std=c++20 (torch >= 2.14
#      headers refuse C++17), built with MMCV_WITH_OPS=1 (~11 min on 2 cores).
#   4. mmengine, mmpretrain, mmsegmentation, mmdet and the run-time extras, test tools.
#   5. sslreg itself, editable.
# A second run finds the stamp written at the end and returns in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_BOOT="${PYTHON:-python3}"
WHEEL_CACHE="${SSLREG_WHEEL_CACHE:-$ROOT/../shared/wheels}"
STAMP="$VENV/.sslreg-install-stamp"

say() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# What the install depends on: if none of it changed, there is nothing to do.
want_stamp() {
  cat "$ROOT/tools/install.sh" "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha256sum | cut -d' ' -f1
}

if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP")" = "$(want_stamp)" ] \
   && [ -z "${SSLREG_BUILD_MMCV:-}" ]; then
  say "up to date ($VENV); nothing to do"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $($PY_BOOT --version)"
  "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

say "build tools: $(grep -v '^#' "$ROOT/requirements/build.txt" | tr '\n' ' ')"
"${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"

say "torch 2.14.1 + torchvision 0.29.1 (large; taken from local disk when available)"
"${PIP[@]}" install -q "torch==2.14.1" "torchvision==0.29.1"

say "mmengine 0.10.7 (mmcv imports it)"
"${PIP[@]}" install -q "mmengine==0.10.7" "numpy<2"

# ---- mmcv 2.1.0 -----------------------------------------------------------------------
have_mmcv() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" >/dev/null 2>&1; }

# The cached wheel fits only the torch, Python and platform it was built for (its README).
cached_wheel_fits() {
  local whl="$1"
  "$PY" - "$whl" <<'EOF'
import platform, sys, torch
from pathlib import Path
whl = Path(sys.argv[1]).name
tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
ok = (tag in whl and platform.machine() in whl and sys.platform.startswith('linux')
      and torch.__version__.split('+')[0] == '2.14.1')
sys.exit(0 if ok else 1)
EOF
}

build_mmcv_from_source() {
  local work
  work="$(mktemp -d)"
  say "mmcv 2.1.0: building from the PyPI sdist in $work (about 11 min on 2 cores; compiler output goes to $work/build.log)"
  "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$work" "mmcv==2.1.0"
  tar -xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
  # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
  sed -i "s/'-std=c++17'\]/'-std=c++20']/" "$work/mmcv-2.1.0/setup.py"
  grep -q "std=c++20" "$work/mmcv-2.1.0/setup.py" || { say "could not patch mmcv's setup.py for C++20"; exit 1; }
  ( cd "$work/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CFLAGS=-g0 \
      "${PIP[@]}" wheel -v --no-build-isolation --no-deps -w "$work/dist" . >"$work/build.log" 2>&1 ) &
  local pid=$! t=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30; t=$((t + 30))
    # ninja prints "[k/N] c++ ..." per object file: show the latest k/N
    say "  ... still compiling mmcv (${t}s; step $(grep -o '^\[[0-9]*/[0-9]*\]' "$work/build.log" | tail -n 1 || true))"
  done
  if ! wait "$pid"; then
    tail -n 40 "$work/build.log"; say "mmcv build failed (log: $work/build.log)"; exit 1
  fi
  "${PIP[@]}" install -q --no-deps "$work"/dist/mmcv-2.1.0-*.whl
}

if have_mmcv && [ -z "${SSLREG_BUILD_MMCV:-}" ]; then
  say "mmcv 2.1.0 already installed"
else
  whl="$(ls "$WHEEL_CACHE"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -z "${SSLREG_BUILD_MMCV:-}" ] && [ -n "$whl" ] && cached_wheel_fits "$whl"; then
    say "mmcv 2.1.0 from the wheel cache: $whl"
    "${PIP[@]}" install -q --no-deps --force-reinstall "$whl"
  else
    [ -n "$whl" ] && [ -z "${SSLREG_BUILD_MMCV:-}" ] && say "cached wheel $whl does not fit this torch/Python/platform"
    build_mmcv_from_source
  fi
  "${PIP[@]}" install -q addict packaging Pillow pyyaml yapf opencv-python "numpy<2"  # mmcv's own deps
  have_mmcv || { say "mmcv 2.1.0 does not import after install"; exit 1; }
fi

say "OpenMMLab frameworks and run-time extras (requirements/runtime.txt), test tools"
"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"

say "sslreg (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

say "checking imports"
"$PY" -c "import torch, mmcv, mmengine, mmpretrain, mmseg, mmdet, sslreg; print('  torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmengine', mmengine.__version__, '| mmpretrain', mmpretrain.__version__, '| mmseg', mmseg.__version__, '| mmdet', mmdet.__version__, '| sslreg', sslreg.__version__)"

want_stamp > "$STAMP"
say "done: activate with 'source .venv/bin/activate'"
