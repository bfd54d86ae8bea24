/** How long a failed attempt waits before the next one. */

/** Exponential backoff bounds. */
export interface BackoffOptions {
  /** Delay after the first failed attempt; doubles each attempt. */
  baseMs: number;
  /** The delay never exceeds this. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 10 * 60_000 };

/**
 * The delay before retrying after attempt `attempt` (1-based): base * 2^(attempt-1), capped,
 * times a jitter in [0.75, 1.25) so jobs that failed together do not retry together, capped again.
 * The reaper's SQL has the same rule (src/db/backoff-sql.ts; test/backoff.test.ts holds them equal).
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  // 2^60 ms is past any maxMs; a larger power can reach Infinity, and 0 * Infinity is NaN.
  const exponential = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(Math.max(0, attempt - 1), 60));
  return Math.min(options.maxMs, Math.round(exponential * (0.75 + random() / 2)));
}
