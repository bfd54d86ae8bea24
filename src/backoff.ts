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
 * times a jitter in [0.75, 1.25) so jobs that failed together do not retry together.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const exponential = Math.min(options.maxMs, options.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.min(options.maxMs, Math.round(exponential * (0.75 + random() / 2)));
}
