import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts', 'providers/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    execArgv: ['--expose-gc'],
    // CI (CI_JSON set) retries a failed test once: emulators and kill -9 tests share two cores with
    // everything else, and a keep-alive socket closed by an emulator at the wrong moment is not a
    // regression. A test that fails twice fails the run; the JSON report names retried tests.
    retry: process.env.CI_JSON ? 1 : 0,
    reporters: process.env.CI_JSON ? ['default', ['json', { outputFile: process.env.CI_JSON }]] : ['default'],
  },
});
