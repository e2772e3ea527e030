#!/usr/bin/env bash
# Creates .venv at the repository root with the whole stack. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
# torch first and pinned: any other spec downloads several GB of CUDA wheels.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
# Tools the deployment checks use (promtool, schema validators).
if [ -f deploy/setup-tools.sh ]; then bash deploy/setup-tools.sh; fi
