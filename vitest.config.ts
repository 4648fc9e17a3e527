import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds the package to JS once for the tests that start real CLI and run-worker processes.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 20_000,
    // Integration suites share one SQLite/PostgreSQL server and real processes; keep files in parallel but bounded.
    maxWorkers: 2,
  },
});
