#!/usr/bin/env bash
# The Salesforce project's checks, for CI (.ci/run) and for anyone changing salesforce/:
# installs the Node packages from the committed lock file, then runs the LWC unit tests (jest),
# the Apex syntax check and its own test, and the linter; then, when the Salesforce CLI is installed,
# converts the project to a Metadata API package with the deploy-time replacements applied, as
# `sf project deploy start` would before sending it. No Salesforce org is needed or contacted.
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

# The Salesforce CLI (@salesforce/cli 2.x needs Node 22; Salesforce's installers bundle their own Node).
# Its conversion resolves every file to a metadata type and folder the way a deploy does, and applies
# sfdx-project.json's replacements: with sample values set, no placeholder may be left in the result.
if ! command -v sf >/dev/null 2>&1; then
  echo "Skipped: sf project convert source (no Salesforce CLI on PATH: install it with Salesforce's installer, or 'npm install --global @salesforce/cli' on Node 22)"
  exit 0
fi
converted=$(mktemp -d)
trap 'rm -rf "$converted"' EXIT
SF_APPLY_REPLACEMENTS_ON_CONVERT=true SF_DISABLE_TELEMETRY=true SF_AUTOUPDATE_DISABLE=true \
  CCAI_BRIDGE_URL=https://bridge.example.com CCAI_BRIDGE_WEBHOOK_TOKEN=0123abcd \
  CCAI_BRIDGE_INTEGRATION_USERNAME=bridge@example.com \
  CCAI_BRIDGE_CERTIFICATE="$(printf -- '-----BEGIN CERTIFICATE-----\nMIIBcheck\n-----END CERTIFICATE-----')" \
  sf project convert source --root-dir force-app --output-dir "$converted/mdapi" >"$converted/log" 2>&1 \
  || { cat "$converted/log" >&2; exit 1; }
if grep -rlE 'YOUR-BRIDGE-HOST|REPLACE_WITH_' "$converted/mdapi" >&2; then
  echo "sf project convert source left a placeholder in the files above: add it to sfdx-project.json's replacements" >&2
  exit 1
fi
for type in ExternalClientApplication ExtlClntAppGlobalOauthSettings ExtlClntAppOauthConfigurablePolicies \
  ExtlClntAppOauthSettings ExtlClntAppConfigurablePolicies NamedCredential ExternalCredential CustomObject \
  CustomPermission Flow PermissionSet QuickAction Workflow; do
  grep -q "<name>$type</name>" "$converted/mdapi/package.xml" \
    || { echo "sf project convert source did not recognise any $type" >&2; exit 1; }
done
echo "sf project convert source: $(sf --version | head -n 1), every type recognised, every placeholder replaced"
