'use strict';

// Salesforce's recommended rules for LWC on the components; plain Node rules on the scripts.
const { defineConfig } = require('eslint/config');
const js = require('@eslint/js');
const salesforceLwcConfig = require('@salesforce/eslint-config-lwc/recommended');
const globals = require('globals');

module.exports = defineConfig([
    {
        files: ['force-app/main/default/lwc/**/*.js'],
        extends: [salesforceLwcConfig]
    },
    {
        files: ['force-app/main/default/lwc/**/__tests__/**/*.js'],
        extends: [salesforceLwcConfig],
        languageOptions: {
            globals: { ...globals.node, ...globals.jest }
        }
    },
    {
        files: ['jest-mocks/**/*.js'],
        extends: [js.configs.recommended],
        languageOptions: {
            sourceType: 'module',
            globals: { ...globals.browser }
        }
    },
    {
        files: ['scripts/**/*.js', '*.config.js'],
        extends: [js.configs.recommended],
        languageOptions: {
            sourceType: 'commonjs',
            globals: { ...globals.node }
        }
    }
]);
