#!/usr/bin/env bash
# Creates .venv at the repository root with the whole stack. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  if command -v python3.11 >/dev/null 2>&1; then
    python3.11 -m venv .venv
  elif python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    python3 -m venv .venv
  else
    echo "setup: tritonforge needs Python 3.11 (nvidia-pytriton and tensorflow 2.21 wheels): install python3.11 and python3.11-venv" >&2
    exit 1
  fi
fi
# torch and torchvision first, pinned as a matching pair: torchvision's wheels need torch's CUDA
# build (they do not load beside the CPU build: `operator torchvision::nms does not exist`), which
# runs on a CPU-only machine and brings ~3 GB of nvidia-* and triton wheels (3.3 GB more installed).
# This machine's image keeps them on local disk (pip config: extra index /opt/pypi-more/simple);
# elsewhere pip downloads them from PyPI.
if ! .venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1; then
  echo "setup: could not install torch 2.14.1 and torchvision 0.29.1 (CUDA build, ~3 GB of wheels): give pip PyPI or a local index holding them (pip config list)" >&2
  exit 1
fi
.venv/bin/python -c 'import torchvision.ops, torch; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)' 2>/dev/null || {
  echo "setup: torchvision 0.29.1 does not load beside the installed torch ($(.venv/bin/pip show torch 2>/dev/null | sed -n 's/^Version: //p')): it needs torch 2.14.1's CUDA build, not a +cpu one" >&2
  exit 1
}
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,text,vision]"
# torch's CUDA build requires triton (the GPU kernel compiler, ~0.9 GB), which nothing here uses on CPU
# and which segfaults when it loads after tensorflow (triton 3.7/3.8 with tensorflow 2.21: torch.export
# imports it): remove it, and torch runs without it (pip check names it as missing).
.venv/bin/pip uninstall -y -q --disable-pip-version-check triton 2>/dev/null || true
# Tools outside Python: wrk and h2load (load), promtool, npm, schema validators (deployment checks).
bash deploy/setup-tools.sh
