/**
 * What a supervisor knows of flow control, for its snapshot (`spindle inspect`, GET /api/snapshot):
 * the scopes it last read as limited or paused, and per scope what its last limited claim found.
 * A record only: the claim decides nothing by it, and the database stays the one judge of a limit.
 */
import type { ActiveScopes } from '../db/limits.ts';
import type { LimitScope } from '../limits.ts';

/** One limited claim (spindle.claim_limited) as it ended. */
export interface LimitedClaimResult {
  /** ISO time of the claim, by this supervisor's clock. */
  at: string;
  /** Jobs it asked for (its idle threads, within its budgets). */
  asked: number;
  /** Jobs it got. */
  took: number;
  /** Set when a rate window held the rest back: when, after the claim, the next start is allowed (ms). */
  retryMs: number | null;
}

/** A scope this supervisor claims through claim_limited, and its last such claim. */
export interface LimitedScopeView {
  /** `type:resize` or `queue:emails`. */
  scope: string;
  paused: boolean;
  /** Null until this supervisor claims in it (it may serve none of its types). */
  lastClaim: LimitedClaimResult | null;
}

/** The last limited claim per scope. */
export class LimitedClaims {
  readonly #last = new Map<string, LimitedClaimResult>();

  record(scope: LimitScope, asked: number, took: number, retryMs: number | null, now: number): void {
    this.#last.set(`${scope.kind}:${scope.name}`, { at: new Date(now).toISOString(), asked, took, retryMs });
  }

  /** The scopes of `active`, types first, each with its last claim. */
  view(active: ActiveScopes): LimitedScopeView[] {
    const scopes = [...[...active.types].sort().map((n) => `type:${n}`), ...[...active.queues].sort().map((n) => `queue:${n}`)];
    return scopes.map((scope) => ({ scope, paused: active.paused.has(scope), lastClaim: this.#last.get(scope) ?? null }));
  }
}

/**
 * What a scope's last claim found, in words: `took 1 of 2; held back by its rate limit, next start in
 * 340ms`. A claim that took fewer than it asked without a rate window found the scope at a limit or
 * no more of its jobs runnable: claim_limited does not say which (`spindle limits` shows the counts).
 */
export function lastClaimText(view: LimitedScopeView, now: number, duration: (ms: number) => string): string {
  if (view.paused) return 'paused: no claims';
  const c = view.lastClaim;
  if (!c) return 'no claim yet';
  const took = `took ${c.took} of ${c.asked}`;
  if (c.retryMs !== null) {
    const left = Math.max(0, Date.parse(c.at) + c.retryMs - now);
    return `${took}; held back by its rate limit, next start in ${duration(left)}`;
  }
  return c.took < c.asked ? `${took}; at a limit or no more runnable` : took;
}
