/**
 * Iterated SHA-256: hashes the seed, then hashes each 32-byte digest again,
 * `rounds` times in all. Every round depends on the one before, so the chain
 * cannot be split across cores: a plain, sequential CPU job.
 */
import { createHash } from 'node:crypto';
import type { JobContext } from '../src/context.ts';
import { PermanentError } from '../src/errors.ts';

/** The most rounds accepted (about 13 s on one core). */
export const MAX_ROUNDS = 10_000_000;

/** The longest seed accepted, in UTF-16 code units. */
export const MAX_SEED_LENGTH = 1 << 20;

/** Rounds between two looks at the signal (a few milliseconds of work). */
const CHUNK_ROUNDS = 4096;

/** Progress is reported whenever it has moved on by at least this many percent. */
const PROGRESS_STEP = 2;

/** Input of `hashchain`. */
export interface HashchainInput {
  /** Hashed (as UTF-8) by the first round. */
  seed: string;
  /** How many times SHA-256 is applied: an integer from 1 to MAX_ROUNDS. */
  rounds: number;
}

/** Output of `hashchain`. */
export interface HashchainOutput {
  /** The last digest, lowercase hex (64 characters). */
  digest: string;
  /** The rounds that were run. */
  rounds: number;
}

/** A demo input: about 250 ms on one core. */
export const demoInput: HashchainInput = { seed: 'spindle', rounds: 200_000 };

/** Runtime options for the `hashchain` job type. */
export const options = { timeoutMs: 60_000, maxAttempts: 3 };

/** Computes sha256^rounds(seed): round 1 hashes the seed, round n hashes the raw digest of round n-1. */
export default async function hashchain(
  input: HashchainInput,
  ctx: JobContext,
): Promise<HashchainOutput> {
  const { seed, rounds } = readInput(input);
  ctx.signal.throwIfAborted();

  let digest = createHash('sha256').update(seed, 'utf8').digest();
  let done = 1;
  let reported = 0;
  while (done < rounds) {
    const end = Math.min(done + CHUNK_ROUNDS, rounds);
    for (; done < end; done++) digest = createHash('sha256').update(digest).digest();

    const percent = Math.floor((done / rounds) * 100);
    if (percent >= reported + PROGRESS_STEP && percent < 100) {
      reported = percent;
      ctx.progress(percent, 'hashing', { rounds: done });
    }
    // The abort arrives as a message: without this turn of the event loop it could never fire.
    await yieldToEventLoop();
    ctx.signal.throwIfAborted();
  }

  ctx.progress(100, 'done', { rounds });
  return { digest: digest.toString('hex'), rounds };
}

/** Checks the input, throwing PermanentError (no retry) with the field's name. */
function readInput(input: HashchainInput): HashchainInput {
  if (typeof input !== 'object' || input === null) {
    throw new PermanentError('input must be an object like { "seed": "abc", "rounds": 1000 }');
  }
  const { seed, rounds } = input;
  if (typeof seed !== 'string' || seed.length > MAX_SEED_LENGTH) {
    throw new PermanentError(
      `input.seed must be a string of at most ${MAX_SEED_LENGTH} characters (got ${describe(seed)})`,
    );
  }
  if (typeof rounds !== 'number' || !Number.isInteger(rounds) || rounds < 1 || rounds > MAX_ROUNDS) {
    throw new PermanentError(
      `input.rounds must be an integer from 1 to ${MAX_ROUNDS} (got ${JSON.stringify(rounds)})`,
    );
  }
  return { seed, rounds };
}

/** A short description of a bad value for an error message. */
function describe(value: unknown): string {
  return typeof value === 'string' ? `a string of ${value.length} characters` : String(JSON.stringify(value));
}

/** Lets pending messages (an abort among them) be delivered before the next chunk of work. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
