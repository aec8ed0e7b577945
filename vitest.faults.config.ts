import { defineConfig } from 'vitest/config';

/** The fault suite: faults hit shared things (the Docker engine, workers), so its files run one at a time. */
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 240_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
