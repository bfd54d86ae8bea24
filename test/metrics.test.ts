/**
 * The Prometheus metrics of a real supervisor: scraped after jobs ran, with their labels; queue depth
 * sampled by one grouped query on a timer, never by a scrape.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetricsState } from '../src/ops/metrics.ts';
import type { Client } from '../src/client.ts';
import { VERSION, type SupervisorHandle } from '../src/start.ts';
import type { TestDatabase } from './helpers/database.ts';
import { actorState, nextEvent, startOpsSupervisor, stopOpsSupervisor } from './helpers/ops.ts';

const SAMPLE_MS = 200;

let db: TestDatabase;
let client: Client;
let tmp: string;
let handle: SupervisorHandle;
let url: string;

beforeAll(async () => {
  ({ db, client, handle, tmp } = await startOpsSupervisor('metrics', { metricsPort: 0, metricsSampleMs: SAMPLE_MS }));
  url = actorState<MetricsState>(handle, 'metrics').url!;
});

afterAll(() => stopOpsSupervisor({ db, client, handle, tmp }));

async function scrape(): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one series, e.g. `spindle_jobs_finished_total{type="quick",outcome="succeeded"}`; undefined if absent. */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (line.slice(0, space) === series) return Number(line.slice(space + 1));
  }
  return undefined;
}

/** Resolves once a queue-depth sample taken after this call is in the registry. */
async function nextSample(): Promise<void> {
  const before = actorState<MetricsState>(handle, 'metrics').samples;
  await expect.poll(() => actorState<MetricsState>(handle, 'metrics').samples, { timeout: 5_000, interval: 20 }).toBeGreaterThan(before + 1);
}

describe('metrics', () => {
  it('counts claims and outcomes by type, with run-time and queue-wait histograms', async () => {
    const jobs = await client.enqueueMany([
      { type: 'quick', input: 1 },
      { type: 'quick', input: 2 },
      { type: 'quick', input: 3 },
      { type: 'failing' },
    ]);
    await Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs: 15_000 })));
    const text = await scrape();
    expect(value(text, 'spindle_jobs_claimed_total{type="quick"}')).toBe(3);
    expect(value(text, 'spindle_jobs_claimed_total{type="failing"}')).toBe(1);
    expect(value(text, 'spindle_jobs_finished_total{type="quick",outcome="succeeded"}')).toBe(3);
    expect(value(text, 'spindle_jobs_finished_total{type="failing",outcome="failed"}')).toBe(1);
    expect(value(text, 'spindle_job_run_seconds_count{type="quick",outcome="succeeded"}')).toBe(3);
    expect(value(text, 'spindle_job_run_seconds_bucket{le="+Inf",type="quick",outcome="succeeded"}')).toBe(3);
    expect(value(text, 'spindle_job_run_seconds_bucket{le="600",type="failing",outcome="failed"}')).toBe(1);
    expect(value(text, 'spindle_job_queue_wait_seconds_count{type="quick"}')).toBe(3);
    expect(value(text, 'spindle_job_queue_wait_seconds_sum{type="quick"}')).toBeGreaterThanOrEqual(0);
    expect(value(text, `spindle_info{supervisor="${handle.id}",version="${VERSION}"}`)).toBe(1);
  });

  it('samples queue depth by queue and state, and a queue that empties drops to nothing', async () => {
    const later = await client.enqueue('quick', null, { queue: 'later', delayMs: 3_600_000 });
    await client.enqueue('quick', null, { queue: 'later', delayMs: 3_600_000 });
    await nextSample();
    let text = await scrape();
    expect(value(text, 'spindle_queue_jobs{queue="later",state="queued"}')).toBe(2);
    expect(value(text, 'spindle_queue_jobs{queue="default",state="succeeded"}')).toBe(3);
    expect(value(text, 'spindle_queue_jobs{queue="default",state="failed"}')).toBe(1);
    expect(value(text, 'spindle_queue_sample_age_seconds')).toBeLessThan(5);
    await client.cancel(later.id);
    await nextSample();
    text = await scrape();
    expect(value(text, 'spindle_queue_jobs{queue="later",state="queued"}')).toBe(1);
    expect(value(text, 'spindle_queue_jobs{queue="later",state="cancelled"}')).toBe(1);
    await db.pool.query(`DELETE FROM spindle.jobs WHERE queue = 'later'`);
    await nextSample();
    expect(value(await scrape(), 'spindle_queue_jobs{queue="later",state="queued"}')).toBeUndefined();
  });

  it('scrapes never query the database: samples follow the timer, not the scrapes', async () => {
    const before = actorState<MetricsState>(handle, 'metrics');
    const started = Date.now();
    for (let i = 0; i < 30; i++) await scrape();
    const after = actorState<MetricsState>(handle, 'metrics');
    expect(after.scrapes - before.scrapes).toBe(30);
    const periods = Math.ceil((Date.now() - started) / SAMPLE_MS) + 1;
    expect(after.samples - before.samples).toBeLessThanOrEqual(periods);
  });

  it('reports lost claims, actor restarts, the pool, event-loop lag and database pools', async () => {
    // Lost claims and restarts are rare by design: drive the events the counters listen to.
    handle.supervisor.events.emit('claim:lost', { id: '1', attempt: 1, reason: 'test' });
    handle.supervisor.emit('actor:restart', { name: 'reaper', path: 'supervisor/reaper', at: new Date().toISOString(), restarts: 1, delayMs: 100 });
    await nextSample();
    const text = await scrape();
    expect(value(text, 'spindle_claims_lost_total')).toBe(1);
    expect(value(text, 'spindle_actor_restarts_total{actor="supervisor/reaper"}')).toBe(1);
    expect(value(text, 'spindle_pool_max_threads')).toBe(2);
    expect(value(text, 'spindle_pool_threads')).toBeGreaterThanOrEqual(1);
    expect(value(text, 'spindle_pool_busy_threads')).toBe(0);
    const utilisation = value(text, 'spindle_pool_utilisation_ratio')!;
    expect(utilisation).toBeGreaterThanOrEqual(0);
    expect(utilisation).toBeLessThanOrEqual(1);
    expect(value(text, 'spindle_event_loop_lag_seconds{quantile="0.99"}')).toBeGreaterThan(0);
    // In seconds, not ms: the histogram's floor is its 10 ms resolution (10 in ms), and a loaded
    // machine may stall the loop for a second.
    expect(value(text, 'spindle_event_loop_lag_seconds{quantile="max"}')).toBeLessThan(5);
    expect(value(text, 'spindle_db_pool_connections{pool="main",state="total"}')).toBeGreaterThanOrEqual(1);
    expect(value(text, 'spindle_db_pool_connections{pool="fast",state="waiting"}')).toBe(0);
    expect(value(text, 'spindle_leader')).toBeDefined();
  });

  it('serves only GET /metrics', async () => {
    expect((await fetch(url.replace('/metrics', '/other'))).status).toBe(404);
    const post = await fetch(url, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('binds 127.0.0.1 by default', () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  });

  it('reports flow control per scope: slots in use, the limits in force, jobs held back, pauses; a lifted scope drops out', async () => {
    await client.setLimits('stepper', { globalConcurrency: 1, rateLimit: { limit: 100, intervalMs: 60_000 } });
    await client.pause('queue:parked');
    const started = nextEvent(handle, 'job:started', (e) => e.type === 'stepper');
    const jobs = await client.enqueueMany([
      ...[1, 2, 3].map(() => ({ type: 'stepper', input: { steps: 1000, stepMs: 50 } })),
      ...[1, 2].map(() => ({ type: 'quick', options: { queue: 'parked' } })),
    ]);
    try {
      await started;
      await nextSample();
      const text = await scrape();
      expect(value(text, 'spindle_limit_running{scope="type:stepper"}')).toBe(1);
      expect(value(text, 'spindle_limit_waiting{scope="type:stepper"}')).toBe(2);
      expect(value(text, 'spindle_limit_max{scope="type:stepper",limit="globalConcurrency"}')).toBe(1);
      expect(value(text, 'spindle_limit_max{scope="type:stepper",limit="rateLimit"}')).toBe(100);
      expect(value(text, 'spindle_limit_max{scope="type:stepper",limit="keyConcurrency"}')).toBeUndefined();
      expect(value(text, 'spindle_limit_window_starts{scope="type:stepper"}')).toBe(1);
      expect(value(text, 'spindle_limit_paused{scope="type:stepper"}')).toBe(0);
      expect(value(text, 'spindle_limit_paused{scope="queue:parked"}')).toBe(1);
      expect(value(text, 'spindle_limit_waiting{scope="queue:parked"}')).toBe(2);
      expect(value(text, 'spindle_limit_running{scope="queue:parked"}')).toBe(0);
    } finally {
      for (const job of jobs) await client.cancel(job.id);
      await Promise.all(jobs.map((job) => client.waitFor(job.id, { timeoutMs: 15_000 })));
      await client.clearLimits('stepper');
      await client.resume('queue:parked');
    }
    await nextSample();
    const text = await scrape();
    expect(value(text, 'spindle_limit_running{scope="type:stepper"}')).toBeUndefined();
    expect(value(text, 'spindle_limit_paused{scope="queue:parked"}')).toBeUndefined();
  });
});
