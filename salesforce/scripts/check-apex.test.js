// The Apex syntax check must fail on broken Apex, or CI would pass whatever is committed.
// Node's own test runner (node --test), not jest: the LWC jest set-up runs in a browser-like
// environment, where the parser package resolves to its browser build.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { syntaxErrors } = require('./check-apex');

const SCRIPT = path.join(__dirname, 'check-apex.js');
const PROJECT = path.join(__dirname, '..');

function run(folder) {
    try {
        const stdout = execFileSync(process.execPath, [SCRIPT, folder], { encoding: 'utf8', stdio: 'pipe' });
        return { status: 0, output: stdout };
    } catch (error) {
        return { status: error.status, output: `${error.stdout}${error.stderr}` };
    }
}

describe('check-apex', () => {
    it('accepts valid Apex, SOQL included', () => {
        const source = `public with sharing class Ok {
            public static List<Case> open(Id caseId) {
                return [SELECT Id FROM Case WHERE Id = :caseId WITH USER_MODE LIMIT 1];
            }
        }`;
        assert.deepEqual(syntaxErrors(source), []);
    });

    const broken = [
        ['a missing semicolon', 'public class A { void f() { Integer i = 1 } }'],
        ['a missing closing brace', 'public class A { void f() { }'],
        ['an unterminated string', "public class A { String s = 'oops; }"],
        ['a broken SOQL query', 'public class A { void f() { List<Case> c = [SELECT FROM Case]; } }'],
        ['an expression where a type belongs', 'public class A { 1 + 2 f() {} }']
    ];
    for (const [name, source] of broken) {
        it(`reports ${name} with its line`, () => {
            const errors = syntaxErrors(source);
            assert.ok(errors.length > 0, 'no syntax error reported');
            assert.equal(errors[0].line, 1);
        });
    }

    it('checks a trigger as a trigger', () => {
        assert.deepEqual(syntaxErrors('trigger T on Case (after update) { }', 'trigger'), []);
        assert.ok(syntaxErrors('trigger T on Case (after update) { }', 'class').length > 0);
    });

    it('exits 1 and names the file and line of a syntax error', () => {
        const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'check-apex-'));
        try {
            fs.writeFileSync(path.join(folder, 'Good.cls'), 'public class Good {}\n');
            fs.writeFileSync(path.join(folder, 'Broken.cls'), 'public class Broken {\n    void f() { return }\n}\n');
            const result = run(folder);
            assert.equal(result.status, 1);
            assert.ok(result.output.includes(`${path.join(folder, 'Broken.cls')}:2:`), result.output);
            assert.ok(result.output.includes('1 of 2 Apex files failed'), result.output);
        } finally {
            fs.rmSync(folder, { recursive: true, force: true });
        }
    });

    it('exits 1 when there is no Apex to check', () => {
        const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'check-apex-'));
        try {
            assert.equal(run(folder).status, 1);
        } finally {
            fs.rmSync(folder, { recursive: true, force: true });
        }
    });

    it('passes the project as committed', () => {
        const result = run(path.join(PROJECT, 'force-app'));
        assert.match(result.output, /Apex syntax check: \d+ Apex files parsed\./);
        assert.equal(result.status, 0);
    });
});
