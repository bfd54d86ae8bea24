/**
 * Counts the primes up to a limit with a segmented sieve of Eratosthenes over
 * the odd numbers. The segment is small enough to stay in cache, so the work is
 * bound by the CPU, not by memory.
 */
import type { JobContext } from '../src/context.ts';
import { PermanentError } from '../src/errors.ts';

/** The largest limit accepted (about half a second of work on one core). */
export const MAX_LIMIT = 200_000_000;

/** Odd numbers per segment: a 64 KiB sieve, which fits in a core's L2 cache. */
const SEGMENT_ODDS = 1 << 16;

/** Progress is reported whenever it has moved on by at least this many percent. */
const PROGRESS_STEP = 2;

/** A demo input: about 200 ms on one core. */
export const demoInput: PrimesInput = { limit: 100_000_000 };

/** Runtime options for the `primes` job type. */
export const options = { timeoutMs: 60_000, maxAttempts: 3 };

/** Input of `primes`: count the primes p with 2 <= p <= limit. */
export interface PrimesInput {
  /** Upper bound, inclusive: an integer from 2 to MAX_LIMIT. */
  limit: number;
}

/** Output of `primes`. */
export interface PrimesOutput {
  /** The limit that was sieved. */
  limit: number;
  /** How many primes are <= limit. */
  count: number;
  /** The largest prime <= limit. */
  largest: number;
}

/** Sieves the primes up to `input.limit`, reporting progress per few percent of segments. */
export default async function primes(input: PrimesInput, ctx: JobContext): Promise<PrimesOutput> {
  const limit = readLimit(input);
  ctx.signal.throwIfAborted();

  // 2 is the only even prime; everything below works on odd n = 2k + 1, by k.
  let count = 1;
  let largestIndex = 0;
  const lastIndex = Math.floor((limit - 1) / 2);
  const base = oddPrimesUpTo(Math.floor(Math.sqrt(limit)));
  // next[i]: the index of the next odd multiple of base[i] to strike, starting at its square.
  const next = new Int32Array(base.length);
  for (let i = 0; i < base.length; i++) next[i] = (base[i] * base[i] - 1) / 2;

  const segment = new Uint8Array(SEGMENT_ODDS);
  let reported = 0;
  for (let low = 1; low <= lastIndex; low += SEGMENT_ODDS) {
    const high = Math.min(low + SEGMENT_ODDS, lastIndex + 1);
    const size = high - low;
    segment.fill(0, 0, size);
    for (let i = 0; i < base.length; i++) {
      const p = base[i];
      // A prime starts at its square; squares grow with the prime, so none after this one starts here.
      if (p * p >= 2 * high + 1) break;
      let k = next[i];
      for (; k < high; k += p) segment[k - low] = 1;
      next[i] = k;
    }
    for (let j = 0; j < size; j++) {
      if (segment[j] === 0) {
        count++;
        largestIndex = low + j;
      }
    }

    const percent = Math.floor(((high - 1) / lastIndex) * 100);
    if (percent >= reported + PROGRESS_STEP && percent < 100) {
      reported = percent;
      ctx.progress(percent, 'sieving', { count });
    }
    // The abort arrives as a message: without this turn of the event loop it could never fire.
    await yieldToEventLoop();
    ctx.signal.throwIfAborted();
  }

  const largest = largestIndex === 0 ? 2 : 2 * largestIndex + 1;
  ctx.progress(100, 'done', { count });
  return { limit, count, largest };
}

/** The odd primes up to `max`, by a plain sieve (max is at most about 14 142). */
function oddPrimesUpTo(max: number): Int32Array {
  const composite = new Uint8Array(max + 1);
  const found: number[] = [];
  for (let n = 3; n <= max; n += 2) {
    if (composite[n] === 1) continue;
    found.push(n);
    for (let m = n * n; m <= max; m += 2 * n) composite[m] = 1;
  }
  return Int32Array.from(found);
}

/** Checks the input, throwing PermanentError (no retry) with the field's name. */
function readLimit(input: PrimesInput): number {
  if (typeof input !== 'object' || input === null) {
    throw new PermanentError('input must be an object like { "limit": 1000000 }');
  }
  const { limit } = input;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 2 || limit > MAX_LIMIT) {
    throw new PermanentError(
      `input.limit must be an integer from 2 to ${MAX_LIMIT} (got ${JSON.stringify(limit)})`,
    );
  }
  return limit;
}

/** Lets pending messages (an abort among them) be delivered before the next chunk of work. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
