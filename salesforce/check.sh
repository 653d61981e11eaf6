#!/usr/bin/env bash
# The Salesforce project's checks, for CI (.ci/run) and for anyone changing salesforce/:
# installs the Node packages from the committed lock file, then runs the LWC unit tests (jest),
# the Apex syntax check and its own test, and the linter. No Salesforce org is needed or contacted.
#
#   bash salesforce/check.sh
set -euo pipefail
cd "$(dirname "$0")"

# The Apex parser (@apexdevtools/apex-parser 5) supports Node 20.19 and newer.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "Node.js 20+ and npm are needed for the Salesforce checks: apt-get install nodejs npm" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20+ is needed for the Salesforce checks (this is $(node --version)): install a newer nodejs" >&2
  exit 1
fi

# Install exactly the lock file's packages, unless node_modules already holds them (a stamp of the
# lock file's hash, written after a successful install; a fresh clone always installs).
# --prefer-offline takes packages from npm's cache when it has them, so a warm run needs no network.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.installed-lock 2>/dev/null)" != "$lock_hash" ]; then
  npm ci --no-audit --no-fund --prefer-offline --loglevel=error
  echo "$lock_hash" > node_modules/.installed-lock
fi
npm test --silent
npm run --silent check:apex
npm run --silent lint
