/**
 * The dashboard's charts kept in memory: a ring of fixed-width time buckets (10 s by default, an
 * hour of them), each with the attempts that ended in it by outcome, their run times by type, and
 * the last queue depth sampled in it. Pure: the caller says what time it is, so tests need no clock.
 *
 * Run times are kept as values, not histogram buckets, so p50 and p99 are read exactly; a bucket
 * keeps at most `maxRunTimes` per type (a uniform sample of them past that: reservoir sampling), so
 * a burst of short jobs costs a bounded array, not one entry per job.
 */

/** Options of ChartSamples. */
export interface ChartSamplesOptions {
  /** Width of a bucket, in ms. */
  bucketMs: number;
  /** Buckets kept: the longest window that can be shown is bucketMs * keep. */
  keep: number;
  /** Run times kept per type and bucket. */
  maxRunTimes: number;
}

/** Default: 10 s buckets, an hour of them, 512 run times per type and bucket. */
export const DEFAULT_CHART_SAMPLES: ChartSamplesOptions = { bucketMs: 10_000, keep: 360, maxRunTimes: 512 };

/** One bucket as the charts read it. */
export interface ChartPoint {
  /** The bucket's start, ms since the epoch. */
  at: number;
  /** Attempts that ended in it, by outcome. */
  finished: Record<string, number>;
  /** Jobs by state (every supervisor's), as last sampled in it; null when no sample fell in it. */
  depth: Record<string, number> | null;
  /** Run times of the attempts that ended in it, by type. */
  runTimeMs: Record<string, { p50: number; p99: number; count: number }>;
}

interface Bucket {
  at: number;
  finished: Record<string, number>;
  depth: Record<string, number> | null;
  runTimes: Map<string, { values: number[]; seen: number }>;
}

/** The ring of buckets. */
export class ChartSamples {
  readonly options: ChartSamplesOptions;
  /** Oldest first; a bucket exists only once something fell in it. */
  readonly #buckets: Bucket[] = [];

  constructor(options: Partial<ChartSamplesOptions> = {}) {
    this.options = { ...DEFAULT_CHART_SAMPLES, ...options };
  }

  /** An attempt ended at `now` after running `ms`. */
  finished(type: string, outcome: string, ms: number, now: number): void {
    const b = this.#bucket(now);
    b.finished[outcome] = (b.finished[outcome] ?? 0) + 1;
    let times = b.runTimes.get(type);
    if (!times) b.runTimes.set(type, (times = { values: [], seen: 0 }));
    times.seen++;
    if (times.values.length < this.options.maxRunTimes) times.values.push(ms);
    else {
      const slot = Math.floor(Math.random() * times.seen);
      if (slot < times.values.length) times.values[slot] = ms;
    }
  }

  /** Jobs by state, counted at `now`; the last count in a bucket is the one shown. */
  depth(byState: Record<string, number>, now: number): void {
    this.#bucket(now).depth = { ...byState };
  }

  /**
   * One point per bucket of the last `windowMs` up to `now`, the bucket still filling included (so
   * a chart moves as jobs end, not only every bucketMs); buckets nothing fell in are empty points.
   */
  points(windowMs: number, now: number): ChartPoint[] {
    const width = this.options.bucketMs;
    const last = Math.floor(now / width) * width;
    const count = Math.max(1, Math.min(this.options.keep, Math.ceil(windowMs / width)));
    const byAt = new Map(this.#buckets.map((b) => [b.at, b]));
    const points: ChartPoint[] = [];
    for (let at = last - (count - 1) * width; at <= last; at += width) {
      const b = byAt.get(at);
      points.push(b ? pointOf(b) : { at, finished: {}, depth: null, runTimeMs: {} });
    }
    return points;
  }

  #bucket(now: number): Bucket {
    const at = Math.floor(now / this.options.bucketMs) * this.options.bucketMs;
    const newest = this.#buckets.at(-1);
    if (newest && newest.at === at) return newest;
    // A time before the newest bucket (a clock step back) joins the newest rather than reorder the ring.
    if (newest && at < newest.at) return newest;
    const b: Bucket = { at, finished: {}, depth: null, runTimes: new Map() };
    this.#buckets.push(b);
    const oldest = at - (this.options.keep - 1) * this.options.bucketMs;
    while (this.#buckets.length > 0 && this.#buckets[0]!.at < oldest) this.#buckets.shift();
    return b;
  }
}

function pointOf(b: Bucket): ChartPoint {
  const runTimeMs: ChartPoint['runTimeMs'] = {};
  for (const [type, { values, seen }] of b.runTimes) {
    const sorted = [...values].sort((x, y) => x - y);
    runTimeMs[type] = { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), count: seen };
  }
  return { at: b.at, finished: { ...b.finished }, depth: b.depth && { ...b.depth }, runTimeMs };
}

/** The nearest-rank quantile of sorted values. */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
