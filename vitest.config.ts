import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Worker threads and child processes are safest in forked test workers.
    pool: 'forks',
    // Files run one at a time: many start supervisors and threads of their own, and on 2 cores a
    // file's waits (leases, grace periods, timeouts) should not compete with another file's threads.
    fileParallelism: false,
  },
});
