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
# torch first and pinned: any other spec downloads several GB of CUDA wheels.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,text]"
# Tools outside Python: wrk and h2load (load), promtool, npm, schema validators (deployment checks).
bash deploy/setup-tools.sh
