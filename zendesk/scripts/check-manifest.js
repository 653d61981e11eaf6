/*
 * The manifest against what the app needs and the Zendesk Apps Framework documents (apps v2
 * manifest reference): framework 2.0, a ticket_sidebar location whose page exists, the API key a
 * secure setting, every parameter labelled in the default locale, the logos present, and no
 * secret in any asset. `zcli apps:validate` checks more but needs a Zendesk login.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export function problems(root = ROOT) {
    const found = [];
    const manifest = JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8'));
    const translations = JSON.parse(readFileSync(join(root, 'translations', `${manifest.defaultLocale}.json`), 'utf8'));
    if (manifest.frameworkVersion !== '2.0') {
        found.push('frameworkVersion must be "2.0".');
    }
    const sidebar = manifest.location && manifest.location.support && manifest.location.support.ticket_sidebar;
    if (!sidebar || !existsSync(join(root, sidebar.url || ''))) {
        found.push('location.support.ticket_sidebar.url must name a page in assets/.');
    }
    const parameters = Object.fromEntries((manifest.parameters || []).map((p) => [p.name, p]));
    if (!parameters.bridge_api_key || parameters.bridge_api_key.secure !== true) {
        found.push('bridge_api_key must be a secure parameter.');
    }
    if (!parameters.bridge_url || parameters.bridge_url.secure) {
        found.push('bridge_url must be a plain parameter (the app builds its request URL from it).');
    }
    if (!Array.isArray(manifest.domainWhitelist) || manifest.domainWhitelist.length === 0) {
        found.push('domainWhitelist must list the bridge host (secure settings are sent only there).');
    }
    for (const name of Object.keys(parameters)) {
        if (!translations.app.parameters || !translations.app.parameters[name] || !translations.app.parameters[name].label) {
            found.push(`translations: parameter ${name} has no label.`);
        }
    }
    for (const logo of ['logo.png', 'logo-small.png']) {
        if (!existsSync(join(root, 'assets', logo))) {
            found.push(`assets/${logo} is missing.`);
        }
    }
    for (const file of readdirSync(join(root, 'assets')).filter((f) => /\.(js|html)$/.test(f))) {
        if (/BRIDGE_API_KEY\s*=|Bearer [A-Za-z0-9]{16,}/.test(readFileSync(join(root, 'assets', file), 'utf8'))) {
            found.push(`assets/${file} seems to hold a key: keys belong in the secure setting.`);
        }
    }
    return found;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    const found = problems();
    for (const problem of found) {
        console.error(problem);
    }
    process.exit(found.length ? 1 : 0);
}
