#!/usr/bin/env bash
# Sets up .venv in the repo root with everything robot-stack needs, on Debian 12 / Python 3.11.
# Idempotent: a second run only checks (a changed pyproject.toml or setup.sh reinstalls, e.g. a new dev tool).
# Pins (docs/ARCHITECTURE.md, "Dependencies"): numpy<2, mujoco 3.3.x,
# escnn without py3nj (its Fortran build is only needed for SO(3), which we never use).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

need_apt=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib libusb-1.0.so.0 || need_apt+=(libusb-1.0-0)
have_lib libEGL.so.1 || need_apt+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
have_lib libOSMesa.so || need_apt+=(libosmesa6)
if ((${#need_apt[@]})); then
  echo "[setup] installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.robot-stack-installed
hash=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  echo "[setup] .venv is up to date"; exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip wheel setuptools
echo "[setup] installing torch 2.13.0 (CPU build on this machine's disk when present)"
"${PIP[@]}" "torch==2.13.0" "numpy==1.26.4"
echo "[setup] installing escnn 1.0.11 without py3nj"
"${PIP[@]}" --no-deps "escnn==1.0.11" "lie_learn==0.0.2"
echo "[setup] installing robot-stack and its dependencies"
"${PIP[@]}" -e ".[all,dev]" "numpy==1.26.4" "torch==2.13.0"
echo "[setup] (a pip note that escnn requires py3nj is expected: py3nj is left out on purpose, see above)"
.venv/bin/python -c "import escnn, robosuite, mujoco, pyrealsense2, onnxruntime, zarr, torch, numpy, importlinter; assert numpy.__version__ < '2'"
echo "$hash" > "$stamp"
echo "[setup] done: $(.venv/bin/python --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
