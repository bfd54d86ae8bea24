/**
 * How much a supervisor claims, and of which types: pure rules, no I/O. The supervisor holds jobs
 * and asks these rules with its pool's RunTimes; the claim statement (db/claims.ts) takes their plan.
 *
 * A supervisor holds its threads' jobs plus a prefetch: about PREFETCH_TARGET_MS of work at the run
 * time measured on the threads (run-times.ts), so short jobs are claimed in batches of hundreds and long ones one per free thread.
 * Each type has a budget of its own by the same rule, so a supervisor trained on fast jobs does not
 * hoard slow ones; a type with `concurrency` is claimed in a statement of its own, within it.
 */
import type { ClaimType } from '../db/claims.ts';
import type { RunTimes } from './run-times.ts';

/** Adaptive prefetch holds about this much work beyond the running jobs. */
export const PREFETCH_TARGET_MS = 50;
/** The most jobs a prefetch adds, however short the jobs. */
export const MAX_PREFETCH = 2_000;

/** What the rules need of the supervisor's settings. */
export interface ClaimSettings {
  concurrency: number;
  /** A fixed prefetch; undefined: adaptive. */
  prefetch: number | undefined;
}

/** Jobs held at most for jobs that run `runMs` each: the threads plus a prefetch that keeps them fed. */
export function holdLimit(settings: ClaimSettings, runMs: number): number {
  const { concurrency, prefetch } = settings;
  if (prefetch !== undefined) return concurrency + prefetch;
  const adaptive = Math.ceil((concurrency * PREFETCH_TARGET_MS) / Math.max(runMs, 0.01));
  return concurrency + Math.min(MAX_PREFETCH, Math.max(concurrency, adaptive));
}

/** Claims again once half the slots are free, or at once when a thread has nothing to do. */
export function wantsClaim(settings: ClaimSettings, runTimes: RunTimes, held: number): boolean {
  const slots = holdLimit(settings, runTimes.all);
  return held < settings.concurrency || slots - held >= Math.ceil(slots / 2);
}

/** A type the supervisor serves, as the plan needs it. */
export interface ServedType {
  type: string;
  maxAttempts: number;
  /** The module's `options.concurrency`: at most this many of it held at once. */
  concurrency: number | undefined;
}

/** One claim: its statements, in order; each takes at most what is still free. */
export interface ClaimPlan {
  /** Slots free in all. */
  free: number;
  /** Types with no limit of their own: one statement. */
  unlimited: ClaimType[];
  /** Types with `concurrency`: a statement each, at most `free` of it. */
  limited: { type: ClaimType; free: number }[];
  /** A type was left out at its budget or limit: claim again as its jobs finish. */
  atBudget: boolean;
}

/** The plan of the next claim, from the jobs held now (`held`: by type). */
export function planClaim(settings: ClaimSettings, runTimes: RunTimes, types: Iterable<ServedType>, held: ReadonlyMap<string, number>): ClaimPlan {
  let heldTotal = 0;
  for (const n of held.values()) heldTotal += n;
  const plan: ClaimPlan = { free: holdLimit(settings, runTimes.all) - heldTotal, unlimited: [], limited: [], atBudget: false };
  for (const served of types) {
    const claimType = { type: served.type, maxAttempts: served.maxAttempts };
    const holding = held.get(served.type) ?? 0;
    // A type this supervisor already holds enough of is left for the others.
    if (holding >= holdLimit(settings, runTimes.of(served.type))) {
      plan.atBudget = true;
    } else if (served.concurrency === undefined) {
      plan.unlimited.push(claimType);
    } else if (served.concurrency - holding > 0) {
      plan.limited.push({ type: claimType, free: served.concurrency - holding });
    } else {
      plan.atBudget = true;
    }
  }
  return plan;
}

/**
 * Splits what a claim brought into the jobs to keep and the ones to give back: a claim sized for
 * short jobs may bring slow ones, kept only as far as their type's budget allows (`held` is counted
 * on, as the kept ones are added).
 */
export function keepWithinBudget<J extends { type: string }>(
  settings: ClaimSettings,
  runTimes: RunTimes,
  claimed: readonly J[],
  held: Map<string, number>,
): { kept: J[]; excess: J[] } {
  const kept: J[] = [];
  const excess: J[] = [];
  for (const job of claimed) {
    const n = held.get(job.type) ?? 0;
    if (n >= holdLimit(settings, runTimes.of(job.type))) {
      excess.push(job);
      continue;
    }
    held.set(job.type, n + 1);
    kept.push(job);
  }
  return { kept, excess };
}
