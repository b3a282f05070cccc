#!/usr/bin/env bash
# buf STANDARD lint of proto/, with buf from the npm registry (pinned) in .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.57.0
buf=.tools/node_modules/.bin/buf
if [ ! -x "$buf" ] || [ "$("$buf" --version 2>/dev/null)" != "$BUF_VERSION" ]; then
  mkdir -p .tools
  npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
"$buf" lint proto
echo "buf lint: clean (buf $BUF_VERSION, STANDARD)"
