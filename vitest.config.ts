import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/helpers/unhandled-errors-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll waits for what a user would see (a page that redraws, a row that changes): a second,
    // its default, is short on a loaded 2-core machine.
    expect: { poll: { timeout: 10_000 } },
    // Worker threads and child processes are safest in forked test workers.
    pool: 'forks',
    // Files run one at a time: many start supervisors and threads of their own, and on 2 cores a
    // file's waits (leases, grace periods, timeouts) should not compete with another file's threads.
    fileParallelism: false,
  },
});
