import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { bridgeHost, build } from './package.js';

test('the package whitelists exactly the bridge host', () => {
    const output = join(mkdtempSync(join(tmpdir(), 'zendesk-app-')), 'dist');
    const { host } = build('https://bridge.acme.example:8443', output);
    const manifest = JSON.parse(readFileSync(join(output, 'manifest.json'), 'utf8'));
    assert.equal(host, 'bridge.acme.example:8443');
    assert.deepEqual(manifest.domainWhitelist, ['bridge.acme.example:8443']);
    assert.ok(existsSync(join(output, 'assets', 'iframe.html')));
    assert.ok(existsSync(join(output, 'translations', 'en.json')));
});

test('a URL the proxy could not use stops the build with the reason', () => {
    assert.throws(() => bridgeHost('http://bridge.example.com'), /https/);
    assert.throws(() => bridgeHost('https://bridge.example.com/api/v1'), /no path/);
    assert.throws(() => bridgeHost(''), /base URL/);
});
