// ESLint's recommended rules: browser modules in assets/, jest in __tests__/, Node in scripts/.
import js from '@eslint/js';
import globals from 'globals';

export default [
    js.configs.recommended,
    {
        files: ['assets/**/*.js'],
        languageOptions: { sourceType: 'module', globals: { ...globals.browser } }
    },
    {
        files: ['__tests__/**/*.js'],
        languageOptions: { sourceType: 'module', globals: { ...globals.browser, ...globals.jest, ...globals.node } }
    },
    {
        files: ['scripts/**/*.js', '*.config.js'],
        languageOptions: { sourceType: 'module', globals: { ...globals.node } }
    }
];
