/**
 * The flow-control gauges of the metrics (metrics.ts samples them with the queue depth, from one
 * statement, listLimits: every supervisor's jobs, so each supervisor reports the same numbers). A
 * scope is labelled `type:NAME` or `queue:NAME`; one with no limit and no pause is not reported.
 */
import { Gauge, type Registry } from 'prom-client';
import type { LimitRow } from '../db/limits.ts';
import { hasLimits, type FlowLimits } from '../limits.ts';

/** The limits reported by `spindle_limit_max`, by their name in a module's options. */
const MAX_OF: Record<string, (l: FlowLimits) => number | undefined> = {
  globalConcurrency: (l) => l.globalConcurrency,
  keyConcurrency: (l) => l.keyConcurrency,
  rateLimit: (l) => l.rateLimit?.limit,
  keyRateLimit: (l) => l.keyRateLimit?.limit,
};

/** The gauges, registered on the metrics actor's registry. */
export class LimitMetrics {
  readonly #running: Gauge<'scope'>;
  readonly #max: Gauge<'scope' | 'limit'>;
  readonly #waiting: Gauge<'scope'>;
  readonly #paused: Gauge<'scope'>;
  readonly #windowStarts: Gauge<'scope'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#running = new Gauge({
      name: 'spindle_limit_running',
      help: 'Slots in use: jobs of a limited or paused type or queue running now, on every supervisor.',
      labelNames: ['scope'],
      registers,
    });
    this.#max = new Gauge({
      name: 'spindle_limit_max',
      help: 'A limit in force (the module\'s, or an operator\'s over it): running jobs for the concurrency limits, starts per window for the rate limits.',
      labelNames: ['scope', 'limit'],
      registers,
    });
    this.#waiting = new Gauge({
      name: 'spindle_limit_waiting',
      help: 'Jobs held back: queued and runnable now in a limited or paused type or queue.',
      labelNames: ['scope'],
      registers,
    });
    this.#paused = new Gauge({ name: 'spindle_limit_paused', help: '1 while a type or queue is paused.', labelNames: ['scope'], registers });
    this.#windowStarts = new Gauge({
      name: 'spindle_limit_window_starts',
      help: "Starts inside a rate-limited type or queue's window now (compare with spindle_limit_max{limit=\"rateLimit\"}).",
      labelNames: ['scope'],
      registers,
    });
  }

  /** Replaces every value with those of `rows`: a scope whose limits were lifted drops out. */
  set(rows: LimitRow[]): void {
    for (const gauge of [this.#running, this.#max, this.#waiting, this.#paused, this.#windowStarts]) gauge.reset();
    for (const row of rows) {
      if (!row.paused && !hasLimits(row.limits)) continue;
      const scope = `${row.kind}:${row.name}`;
      this.#running.set({ scope }, row.running);
      this.#waiting.set({ scope }, row.waiting);
      this.#paused.set({ scope }, row.paused ? 1 : 0);
      for (const [limit, read] of Object.entries(MAX_OF)) {
        const max = read(row.limits);
        if (max !== undefined) this.#max.set({ scope, limit }, max);
      }
      if (row.recentStarts !== null) this.#windowStarts.set({ scope }, row.recentStarts);
    }
  }
}
