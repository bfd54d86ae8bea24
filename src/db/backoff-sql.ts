/**
 * backoffDelay() (src/backoff.ts) as a SQL expression, for the statements that put a job back in
 * the queue on their own (the reaper's). The same rule: base * 2^(attempt-1), capped, times a jitter
 * in [0.75, 1.25), capped again. test/backoff-sql.test.ts runs one table of cases against both.
 */

/** Milliseconds (float8); each argument is a SQL expression. */
export function backoffMsSql(attempt: string, baseMs: string, maxMs: string, random = 'random()'): string {
  // 2^60 ms is past any maxMs; a larger power overflows float8, where PostgreSQL raises an error.
  return `least(${maxMs}, least(${maxMs}, ${baseMs} * 2 ^ least(greatest(0, ${attempt} - 1), 60)) * (0.75 + ${random} / 2))`;
}
