// Native ES modules (the app's files are loaded by the browser as they are, without a build), run
// by jest under Node's --experimental-vm-modules, in a jsdom page.
export default {
    testEnvironment: 'jsdom',
    transform: {},
    testMatch: ['<rootDir>/__tests__/**/*.test.js'],
    collectCoverageFrom: ['assets/*.js']
};
