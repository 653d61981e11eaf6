/*
 * Builds the app for one bridge: `CCAI_BRIDGE_URL=https://bridge.example.com npm run package`
 * writes dist/ (manifest, assets, translations) with the bridge's host as the manifest's only
 * domainWhitelist entry. Zendesk's proxy fills in a secure setting ({{setting.bridge_api_key}})
 * only for requests to a whitelisted domain, so the app is built for its bridge; then
 * `zcli apps:package dist` (or `zcli apps:create dist`) validates and uploads it.
 */
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The host to whitelist, from the bridge's base URL; throws an Error naming what is wrong. */
export function bridgeHost(raw) {
    let url;
    try {
        url = new URL(String(raw || ''));
    } catch {
        throw new Error(`CCAI_BRIDGE_URL must be the bridge's base URL, e.g. https://bridge.example.com, not ${JSON.stringify(raw || '')}.`);
    }
    if (url.protocol !== 'https:') {
        throw new Error(`CCAI_BRIDGE_URL must use https (Zendesk's proxy calls it from the internet), not ${url.protocol}.`);
    }
    if ((url.pathname && url.pathname !== '/') || url.search || url.hash || url.username) {
        throw new Error('CCAI_BRIDGE_URL is the base URL only: no path, query or credentials.');
    }
    return url.host;
}

export function build(bridgeUrl, output = join(ROOT, 'dist')) {
    const host = bridgeHost(bridgeUrl);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'manifest.json'), 'utf8'));
    manifest.domainWhitelist = [host];
    rmSync(output, { recursive: true, force: true });
    mkdirSync(output, { recursive: true });
    cpSync(join(ROOT, 'assets'), join(output, 'assets'), { recursive: true });
    cpSync(join(ROOT, 'translations'), join(output, 'translations'), { recursive: true });
    writeFileSync(join(output, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    return { output, host };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    try {
        const { output, host } = build(process.env.CCAI_BRIDGE_URL);
        console.log(`Built ${output} for ${host}. Next: zcli apps:create ${output} (or apps:update).`);
    } catch (error) {
        console.error(error.message);
        process.exit(1);
    }
}
