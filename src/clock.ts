/** The time source, injected so tests control time. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** The clock used when none is given. */
export const systemClock: Clock = { now: () => Date.now() };
