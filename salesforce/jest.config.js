// The standard LWC jest set-up (@salesforce/sfdx-lwc-jest), plus a stub for lightning/actions,
// which sfdx-lwc-jest does not provide. The mocks live outside force-app so that they are never deployed.
const { jestConfig } = require('@salesforce/sfdx-lwc-jest/config');

module.exports = {
    ...jestConfig,
    moduleNameMapper: {
        '^lightning/actions$': '<rootDir>/jest-mocks/lightning/actions'
    },
    // sfdx-lwc-jest's default finds no files from this layout; the components are these.
    collectCoverageFrom: ['force-app/main/default/lwc/*/*.js'],
    // scripts/ has its own tests, run by Node's test runner (npm run check:apex).
    testPathIgnorePatterns: [...jestConfig.testPathIgnorePatterns, '<rootDir>/scripts/']
};
