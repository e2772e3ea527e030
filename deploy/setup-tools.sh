#!/usr/bin/env bash
# Tools the deployment checks use (tests/test_deploy*.py). Called by scripts/setup.sh on a fresh
# machine (root, CI=true, no stdin); quick when everything is already there.
#   promtool            - Debian's prometheus package: `promtool check config`
#   check-jsonschema    - ships the Compose specification's JSON schema (vendor.compose-spec)
#   kubernetes-validate - ships the Kubernetes OpenAPI-derived JSON schemas, validates offline
#   @kubernetes-models/prometheus-operator (npm) - the PodMonitor CRD schema, for
#                         deploy/k8s/monitoring/validate.mjs; installed under .venv/ (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Installs the server too; nothing starts it in a container without an init system.
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! .venv/bin/python -c 'import check_jsonschema, kubernetes_validate' >/dev/null 2>&1; then
  # -c constraints.txt keeps numpy<2 and protobuf<7 where the rest of the stack needs them.
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt \
    "check-jsonschema==0.39.*" "kubernetes-validate==1.37.*"
fi

NODE_TOOLS=.venv/node-tools
if [ ! -f "$NODE_TOOLS/node_modules/@kubernetes-models/prometheus-operator/package.json" ]; then
  npm install --silent --no-audit --no-fund --prefix "$NODE_TOOLS" \
    @kubernetes-models/prometheus-operator@6.0.0
fi
