/** The statistics every scenario and report uses: medians and percentiles, nothing else. */

/** The p-th percentile (0 to 100) of `values`, linearly interpolated between the nearest ranks. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`p must be from 0 to 100, got ${p}`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (rank - low);
}

/** The median of `values` (NaN when there are none). */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** The arithmetic mean of `values` (NaN when there are none). */
export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  return values.reduce((sum, v) => sum + v, 0) / values.length;
}

/** A latency distribution in the figures the reports show. */
export interface Distribution {
  samples: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

/** Summarises samples into p50, p99, mean and max. */
export function distribution(values: readonly number[]): Distribution {
  return {
    samples: values.length,
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    mean: mean(values),
    max: values.length === 0 ? Number.NaN : Math.max(...values),
  };
}

/**
 * A small seeded generator (mulberry32): every system gets the same "random"
 * arrival schedule, so no system is luckier than another.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
