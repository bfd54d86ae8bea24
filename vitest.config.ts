import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Worker threads and child processes are safest in forked test workers.
    pool: 'forks',
    // Files run one at a time: several tests measure latency and event-loop lag on 2 cores, and
    // they measure spindle, not the contention of other test files burning the same cores.
    fileParallelism: false,
  },
});
