import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // lavapipe already uses every core; parallel test files only fight over them.
    fileParallelism: false,
    pool: 'forks',
  },
});
