/**
 * Feeds the dashboard's charts (chart-samples.ts): a child actor of the supervisor, beside the HTTP
 * server, that counts the attempts this supervisor ends (`job:finished`, as they happen, no query)
 * and counts jobs by state every `sampleMs` with the grouped query the metrics use for queue depth.
 * GET /api/charts reads `view()`; nothing is queried when a page asks.
 */
import type { EventEmitter } from 'eventemitter3';
import { Actor, assertNever } from '../actors/kernel.ts';
import { countJobsByQueueAndState } from '../db/jobs.ts';
import type { Queryable } from '../db/queryable.ts';
import { ValidationError } from '../errors.ts';
import type { RuntimeEvents } from '../runtime-events.ts';
import { ChartSamples, type ChartPoint, type ChartSamplesOptions } from './chart-samples.ts';

/** Options of the ChartSampler actor. */
export interface ChartSamplerOptions {
  /** The runtime's events. */
  events: EventEmitter<RuntimeEvents>;
  /** Where the jobs are counted by state. */
  db: Queryable;
  /** Jobs are counted by state this often (default: the bucket width, 10 s). */
  sampleMs?: number;
  /** The ring's shape (default DEFAULT_CHART_SAMPLES). */
  samples?: Partial<ChartSamplesOptions>;
}

/** What GET /api/charts returns. */
export interface ChartsView {
  bucketMs: number;
  windowMs: number;
  /** The server's time of the reply, ms since the epoch. */
  now: number;
  points: ChartPoint[];
}

/** The sampler's part of a snapshot. */
export interface ChartSamplerState {
  samples: number;
  sampleErrors: number;
  finished: number;
}

type ChartMsg = { type: 'sample' };

/** Keeps the charts' samples. */
export class ChartSampler extends Actor<ChartMsg, ChartSamplerState> {
  readonly #o: ChartSamplerOptions;
  readonly #samples: ChartSamples;
  readonly #sampleMs: number;
  #stats = { samples: 0, sampleErrors: 0, finished: 0 };
  #off: (() => void) | null = null;

  constructor(options: ChartSamplerOptions) {
    super({ name: 'charts' });
    this.#o = options;
    // Kept across restarts of the actor: a crash does not blank the charts.
    this.#samples = new ChartSamples(options.samples);
    this.#sampleMs = options.sampleMs ?? this.#samples.options.bucketMs;
    if (!Number.isInteger(this.#sampleMs) || this.#sampleMs < 1) {
      throw new ValidationError('options.sampleMs', `must be a positive integer, got ${String(options.sampleMs)}`);
    }
  }

  /** The last `windowMs` of samples (at most what the ring keeps). */
  view(windowMs: number): ChartsView {
    const now = this.clock.now();
    const { bucketMs, keep } = this.#samples.options;
    const shown = Math.min(windowMs, bucketMs * keep);
    return { bucketMs, windowMs: shown, now, points: this.#samples.points(shown, now) };
  }

  protected override onStart(): void {
    const onFinished = (e: RuntimeEvents['job:finished'][0]) => {
      this.#stats.finished++;
      this.#samples.finished(e.type, e.outcome, e.ms, this.clock.now());
    };
    const { events } = this.#o;
    events.on('job:finished', onFinished);
    this.#off = () => events.off('job:finished', onFinished);
    this.every(this.#sampleMs, () => ({ type: 'sample' }));
    this.send({ type: 'sample' });
  }

  protected override onStop(): void {
    this.#off?.();
    this.#off = null;
  }

  protected async handle(msg: ChartMsg): Promise<void> {
    switch (msg.type) {
      case 'sample':
        return this.#sample();
      default:
        return assertNever(msg.type);
    }
  }

  protected override inspect(): ChartSamplerState {
    return { ...this.#stats };
  }

  async #sample(): Promise<void> {
    try {
      const byState: Record<string, number> = {};
      for (const c of await countJobsByQueueAndState(this.#o.db)) byState[c.state] = (byState[c.state] ?? 0) + c.count;
      this.#samples.depth(byState, this.clock.now());
      this.#stats.samples++;
    } catch (err) {
      // The database may be restarting: that bucket has no depth, and the next sample tries again.
      this.#stats.sampleErrors++;
      this.logger.warn({ err }, 'charts: could not count jobs by state');
    }
  }
}
