/**
 * Repeats each unhandled error, short, after the run's summary: CI keeps only the end of the output,
 * and the default reporter prints these errors above the summary, where they are cut off.
 */
import type { Reporter, SerializedError, TestModule } from 'vitest/node';

export default class UnhandledErrorsReporter implements Reporter {
  onTestRunEnd(_modules: ReadonlyArray<TestModule>, errors: ReadonlyArray<SerializedError>): void {
    if (errors.length === 0) return;
    const lines = [`\n${errors.length} unhandled error(s), again:`];
    for (const error of errors) {
      const where = (error as { VITEST_TEST_PATH?: string }).VITEST_TEST_PATH ?? 'no test file';
      const test = (error as { VITEST_TEST_NAME?: string }).VITEST_TEST_NAME ?? 'no test';
      lines.push(`- ${error.name ?? 'Error'}: ${error.message} (in ${where}, ${test})`);
      for (const frame of (error.stack ?? '').split('\n').slice(1, 9)) lines.push(`    ${frame.trim()}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  }
}
