#!/usr/bin/env node
/*
 * Syntax-checks every Apex class (.cls) and trigger (.trigger) under the given folders with the
 * ANTLR grammar of @apexdevtools/apex-parser, and exits 1 when any file has a syntax error.
 *
 * No org is reachable from CI, so this is the only compiler-like check the Apex gets before an admin
 * deploys it: it catches syntax errors (a missing brace, a bad SOQL clause), not type errors or
 * unknown fields, which only Salesforce's compiler sees.
 *
 * Usage: node scripts/check-apex.js [folder ...]   (default: force-app)
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { ApexParserFactory, ApexErrorListener } = require('@apexdevtools/apex-parser');

// ANTLR lists every token it would have accepted; a hundred keywords help nobody.
const MAX_MESSAGE = 160;

class CollectingListener extends ApexErrorListener {
    constructor() {
        super();
        this.errors = [];
    }

    apexSyntaxError(line, column, message) {
        const short =
            message.length > MAX_MESSAGE
                ? `${message.slice(0, MAX_MESSAGE)}...`
                : message;
        this.errors.push({ line, column, message: short });
    }
}

/**
 * The syntax errors in one Apex source, as {line, column, message}; empty when it parses.
 * `kind` is "class" for a .cls file and "trigger" for a .trigger file.
 */
function syntaxErrors(source, kind = 'class') {
    const listener = new CollectingListener();
    // createLexerAndParser wires the listener to the lexer too, so bad tokens (an unterminated
    // string) are reported as well as bad structure.
    const { parser } = ApexParserFactory.createLexerAndParser(source, listener);
    if (kind === 'trigger') {
        parser.triggerUnit();
    } else {
        parser.compilationUnit();
    }
    return listener.errors;
}

function apexFiles(folder) {
    const found = [];
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
        const full = path.join(folder, entry.name);
        if (entry.isDirectory()) {
            if (entry.name !== 'node_modules') {
                found.push(...apexFiles(full));
            }
        } else if (/\.(cls|trigger)$/.test(entry.name)) {
            found.push(full);
        }
    }
    return found.sort();
}

function main(folders) {
    const files = folders.flatMap(apexFiles);
    if (files.length === 0) {
        console.error(`No Apex files under ${folders.join(', ')}.`);
        return 1;
    }
    let failed = 0;
    for (const file of files) {
        const kind = file.endsWith('.trigger') ? 'trigger' : 'class';
        const errors = syntaxErrors(fs.readFileSync(file, 'utf8'), kind);
        for (const error of errors) {
            console.error(`${file}:${error.line}:${error.column}: ${error.message}`);
        }
        if (errors.length) {
            failed += 1;
        }
    }
    const checked = `${files.length} Apex file${files.length === 1 ? '' : 's'}`;
    if (failed) {
        console.error(`Apex syntax check: ${failed} of ${checked} failed.`);
        return 1;
    }
    console.log(`Apex syntax check: ${checked} parsed.`);
    return 0;
}

module.exports = { syntaxErrors, apexFiles };

if (require.main === module) {
    const folders = process.argv.slice(2);
    process.exitCode = main(folders.length ? folders : ['force-app']);
}
