/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/__test__/**/*.spec.ts'],
  globalSetup: '<rootDir>/__test__/global-setup.js',
  testTimeout: 30000,
  // Cargo's and the arm64 suite's build trees (the latter holds a copy of this package).
  modulePathIgnorePatterns: ['<rootDir>/target/'],
  // The package's own name, as the examples import it.
  moduleNameMapper: { '^vcpu$': '<rootDir>/ts/index.ts', '^vcpu/package.json$': '<rootDir>/package.json' },
};
