#!/usr/bin/env bash
# The Zendesk app's checks, for CI (.ci/run) and for anyone changing zendesk/: installs the Node
# packages from the committed lock file, then runs the app's unit tests (jest, in jsdom), the
# packaging script's own tests (Node's test runner), the manifest check and the linter. No Zendesk
# account is needed or contacted.
#
#   bash zendesk/check.sh
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "Node.js 20+ and npm are needed for the Zendesk app checks: apt-get install nodejs npm" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20+ is needed for the Zendesk app checks (this is $(node --version))" >&2
  exit 1
fi

# Install exactly the lock file's packages, unless node_modules already holds them (a stamp of the
# lock file's hash, written after a successful install). --prefer-offline uses npm's cache.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.installed-lock 2>/dev/null)" != "$lock_hash" ]; then
  npm ci --no-audit --no-fund --prefer-offline --loglevel=error
  echo "$lock_hash" > node_modules/.installed-lock
fi
# jest runs the app's native ES modules under Node's VM modules, which warns that they are experimental.
NODE_OPTIONS="${NODE_OPTIONS:-} --no-warnings=ExperimentalWarning" npm test --silent
npm run --silent test:scripts
npm run --silent check:manifest
npm run --silent lint
