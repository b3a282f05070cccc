#!/usr/bin/env bash
# Fail when the committed generated code differs from what proto/ generates.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r connector/v1 "$tmp/before"
bash dev/gen-protos.sh >/dev/null
if ! diff -r -x __pycache__ "$tmp/before" connector/v1; then
  cp -r "$tmp/before/." connector/v1/
  echo "error: generated protobuf code is out of date; run 'bash dev/gen-protos.sh' and commit" >&2
  exit 1
fi
echo "protos: generated code matches proto/"
