import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Temporal's native bridge does not run in worker threads.
    pool: 'forks',
    include: ['test/unit/**/*.test.ts', 'test/workflows/**/*.test.ts', 'test/integration/**/*.test.ts'],
    // test/faults runs on its own, one file at a time (vitest.faults.config.ts): it restarts shared things.
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    fileParallelism: true,
    maxWorkers: 2,
  },
});
