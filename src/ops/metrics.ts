/**
 * Prometheus metrics: a child actor of the supervisor that keeps a prom-client registry of its own
 * (never the global default, so two supervisors in one process do not mix) and serves it at
 * `GET /metrics` on `metricsHost:metricsPort` (127.0.0.1 by default).
 *
 * Where each number comes from:
 * - claims, outcomes, run times, queue waits and lost claims: the supervisor's runtime events, counted
 *   as they happen (no query);
 * - actor restarts and crashes: the `actor:*` events the root re-emits for the whole tree;
 * - queue depth (jobs by queue and state, every supervisor's jobs): one grouped query every
 *   `sampleMs`, sent by this actor's own timer. A scrape reads the last sample; scrapes never query.
 * - flow control (slots in use, limits, jobs held back, pauses per limited type or queue:
 *   limit-metrics.ts): one more statement in the same sample, beside the queue depth.
 * - pool threads and utilisation, database pool usage: read at scrape time from the objects in memory;
 * - event-loop lag: `perf_hooks.monitorEventLoopDelay`, its histogram reset after each sample, so the
 *   lag quantiles describe the last sampling period.
 *
 * Queue wait is the time from the job's `run_at` (when it became runnable: its enqueue, its scheduled
 * time or the end of its retry backoff) to its claim, both read from the database's clock, so clock
 * skew between machines does not enter it. The time a claimed job waits in this supervisor's
 * prefetch for a thread is in the run time of `job:finished` (`ms` counts from the thread's start).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { EventEmitter } from 'eventemitter3';
import type pg from 'pg';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { countJobsByQueueAndState } from '../db/jobs.ts';
import { listLimits } from '../db/limits.ts';
import type { Queryable } from '../db/queryable.ts';
import { ValidationError } from '../errors.ts';
import type { PoolStats } from '../pool/pool.ts';
import { Actor, assertNever, type AnyActor } from '../actors/kernel.ts';
import type { ActorEvents } from '../actors/snapshot.ts';
import type { RuntimeEvents } from '../runtime-events.ts';
import { LimitMetrics } from './limit-metrics.ts';
import { closeServer, formatHost, listen } from './serving.ts';

/** Buckets of the run-time histogram, in seconds: 1 ms to 10 min. */
const RUN_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** Buckets of the queue-wait histogram, in seconds: 1 ms to 1 h. */
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** Options of the Metrics actor. */
export interface MetricsOptions {
  /** The supervisor's id, a label of `spindle_info`. */
  supervisorId: string;
  version: string;
  /** The runtime's events. */
  events: EventEmitter<RuntimeEvents>;
  /** The root actor, which re-emits the actor events of the whole tree. */
  root: AnyActor;
  /** The thread pool's numbers, read at scrape time. */
  pool: () => PoolStats;
  /** The database pools to report, by name, read at scrape time. */
  dbPools: () => { name: string; pool: pg.Pool }[];
  /** Where queue depth is counted. */
  db: Queryable;
  /** Queue depth is sampled this often. */
  sampleMs: number;
  /** The port to serve on (0: any free port), or null to keep the registry without serving it. */
  port: number | null;
  /** The address to bind; default 127.0.0.1. */
  host?: string;
}

/** The metrics actor's part of a snapshot. */
export interface MetricsState {
  url: string | null;
  scrapes: number;
  samples: number;
  sampleErrors: number;
  lastSampleAt: string | null;
}

type MetricsMsg = { type: 'sample' } | { type: 'failed'; error: Error };

/** Keeps and serves the runtime's Prometheus metrics. */
export class Metrics extends Actor<MetricsMsg, MetricsState> {
  /** The actor's own registry: `registry.metrics()` is what `/metrics` serves. */
  readonly registry = new Registry();
  readonly #o: MetricsOptions;
  readonly #host: string;
  readonly #lag: IntervalHistogram;
  readonly #queueJobs: Gauge<'queue' | 'state'>;
  readonly #limits: LimitMetrics;
  readonly #samples: Counter;
  #server: Server | null = null;
  #port: number | null = null;
  #offs: (() => void)[] = [];
  #stats = { scrapes: 0, samples: 0, sampleErrors: 0 };
  #lastSampleAt: number | null = null;
  /** Lag quantiles of the last sampling period, in seconds. */
  #lagSeconds = { mean: 0, p50: 0, p99: 0, max: 0 };

  constructor(options: MetricsOptions) {
    super({ name: 'metrics' });
    if (options.port !== null && (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535)) {
      throw new ValidationError('options.port', `must be an integer from 0 to 65535, got ${String(options.port)}`);
    }
    if (!Number.isInteger(options.sampleMs) || options.sampleMs < 1) {
      throw new ValidationError('options.sampleMs', `must be a positive integer, got ${String(options.sampleMs)}`);
    }
    this.#o = options;
    this.#host = options.host ?? '127.0.0.1';
    this.#lag = monitorEventLoopDelay({ resolution: 10 });
    const registers = [this.registry];

    new Gauge({
      name: 'spindle_info',
      help: 'Always 1; the labels say which supervisor and version this is.',
      labelNames: ['supervisor', 'version'],
      registers,
    }).set({ supervisor: options.supervisorId, version: options.version }, 1);

    const claimed = new Counter({ name: 'spindle_jobs_claimed_total', help: 'Jobs claimed by this supervisor.', labelNames: ['type'], registers });
    const finished = new Counter({
      name: 'spindle_jobs_finished_total',
      help: 'Attempts this supervisor ran to an end, by outcome.',
      labelNames: ['type', 'outcome'],
      registers,
    });
    const runTime = new Histogram({
      name: 'spindle_job_run_seconds',
      help: 'Run time of an attempt, from its thread start (or its claim, if it never started) to its end.',
      labelNames: ['type', 'outcome'],
      buckets: RUN_BUCKETS,
      registers,
    });
    const queueWait = new Histogram({
      name: 'spindle_job_queue_wait_seconds',
      help: "Time from a job's run_at (runnable) to its claim, by the database's clock.",
      labelNames: ['type'],
      buckets: WAIT_BUCKETS,
      registers,
    });
    const lost = new Counter({
      name: 'spindle_claims_lost_total',
      help: 'Attempts whose result was dropped because the claim had been lost (lease taken back, fenced write).',
      registers,
    });
    const reaped = new Counter({
      name: 'spindle_jobs_reaped_total',
      help: 'Jobs the reaper took back because their lease ended (counted on the leader).',
      registers,
    });
    const restarts = new Counter({
      name: 'spindle_actor_restarts_total',
      help: 'Actor restarts after a crash, by actor path.',
      labelNames: ['actor'],
      registers,
    });
    const crashes = new Counter({
      name: 'spindle_actor_crashes_total',
      help: 'Actor crashes, by actor path and what the parent did.',
      labelNames: ['actor', 'action'],
      registers,
    });
    const leader = new Gauge({ name: 'spindle_leader', help: '1 while this supervisor is the leader.', registers });
    leader.set(0);

    this.#queueJobs = new Gauge({
      name: 'spindle_queue_jobs',
      help: 'Jobs by queue and state (all supervisors), sampled every few seconds by one grouped query.',
      labelNames: ['queue', 'state'],
      registers,
    });
    this.#limits = new LimitMetrics(this.registry);
    this.#samples = new Counter({ name: 'spindle_queue_samples_total', help: 'Queue depth samples taken.', registers });
    const sampleAge = new Gauge({
      name: 'spindle_queue_sample_age_seconds',
      help: 'Age of the last queue depth sample.',
      registers,
      collect: () => {
        if (this.#lastSampleAt !== null) sampleAge.set((Date.now() - this.#lastSampleAt) / 1000);
      },
    });

    const poolGauge = (name: string, help: string, read: (s: PoolStats) => number): void => {
      const gauge: Gauge = new Gauge({ name, help, registers, collect: () => gauge.set(read(this.#o.pool())) });
    };
    poolGauge('spindle_pool_max_threads', 'Worker threads the pool may run.', (s) => s.maxThreads);
    poolGauge('spindle_pool_threads', 'Worker threads alive.', (s) => s.threads);
    poolGauge('spindle_pool_busy_threads', 'Worker threads running a job now.', (s) => s.busy);
    poolGauge('spindle_pool_queued_jobs', 'Jobs handed to the pool and waiting for a thread.', (s) => s.queued);
    poolGauge('spindle_pool_utilisation_ratio', 'Busy thread time over available thread time since the pool started (0..1).', (s) => s.utilisation);
    poolGauge('spindle_pool_utilisation_now_ratio', 'Busy threads over max threads at scrape time (0..1).', (s) =>
      s.maxThreads === 0 ? 0 : s.busy / s.maxThreads,
    );

    const lag: Gauge<'quantile'> = new Gauge({
      name: 'spindle_event_loop_lag_seconds',
      help: 'Event-loop delay over the last sampling period (quantile 0.5, 0.99, max, mean).',
      labelNames: ['quantile'],
      registers,
      collect: () => {
        const l = this.#lagSeconds;
        lag.set({ quantile: '0.5' }, l.p50);
        lag.set({ quantile: '0.99' }, l.p99);
        lag.set({ quantile: 'max' }, l.max);
        lag.set({ quantile: 'mean' }, l.mean);
      },
    });

    const dbConnections: Gauge<'pool' | 'state'> = new Gauge({
      name: 'spindle_db_pool_connections',
      help: 'Database pool connections: total, idle, and clients waiting for one.',
      labelNames: ['pool', 'state'],
      registers,
      collect: () => {
        for (const { name, pool } of this.#o.dbPools()) {
          dbConnections.set({ pool: name, state: 'total' }, pool.totalCount);
          dbConnections.set({ pool: name, state: 'idle' }, pool.idleCount);
          dbConnections.set({ pool: name, state: 'waiting' }, pool.waitingCount);
        }
      },
    });

    // The event handlers, attached in onStart; the counters outlive restarts of this actor.
    this.#handlers = {
      'job:claimed': (e) => {
        claimed.inc({ type: e.type });
        queueWait.observe({ type: e.type }, e.waitMs / 1000);
      },
      'job:finished': (e) => {
        finished.inc({ type: e.type, outcome: e.outcome });
        runTime.observe({ type: e.type, outcome: e.outcome }, e.ms / 1000);
      },
      'claim:lost': () => lost.inc(),
      'job:reaped': () => reaped.inc(),
      'leader:changed': (e) => leader.set(e.leader ? 1 : 0),
      'actor:restart': (e) => restarts.inc({ actor: e.path }),
      'actor:crash': (e) => crashes.inc({ actor: e.path, action: e.action }),
    };
  }

  readonly #handlers: {
    'job:claimed': (...a: RuntimeEvents['job:claimed']) => void;
    'job:finished': (...a: RuntimeEvents['job:finished']) => void;
    'claim:lost': () => void;
    'job:reaped': () => void;
    'leader:changed': (...a: RuntimeEvents['leader:changed']) => void;
    'actor:restart': (...a: ActorEvents['actor:restart']) => void;
    'actor:crash': (...a: ActorEvents['actor:crash']) => void;
  };

  /** The bound port, or null when not serving. */
  get port(): number | null {
    return this.#port;
  }

  /** `http://host:port/metrics`, or null when not serving. */
  get url(): string | null {
    return this.#port === null ? null : `http://${formatHost(this.#host)}:${this.#port}/metrics`;
  }

  protected override async onStart(): Promise<void> {
    const { events, root } = this.#o;
    const h = this.#handlers;
    events.on('job:claimed', h['job:claimed']);
    events.on('job:finished', h['job:finished']);
    events.on('claim:lost', h['claim:lost']);
    events.on('job:reaped', h['job:reaped']);
    events.on('leader:changed', h['leader:changed']);
    root.on('actor:restart', h['actor:restart']);
    root.on('actor:crash', h['actor:crash']);
    this.#offs.push(
      () => events.off('job:claimed', h['job:claimed']),
      () => events.off('job:finished', h['job:finished']),
      () => events.off('claim:lost', h['claim:lost']),
      () => events.off('job:reaped', h['job:reaped']),
      () => events.off('leader:changed', h['leader:changed']),
      () => root.off('actor:restart', h['actor:restart']),
      () => root.off('actor:crash', h['actor:crash']),
    );
    this.#lag.enable();
    if (this.#o.port !== null) {
      try {
        await this.#listen(this.#o.port);
      } catch (error) {
        // onStop runs only after an onStart that completed.
        await this.#close();
        throw error;
      }
    }
    this.every(this.#o.sampleMs, () => ({ type: 'sample' }));
    this.send({ type: 'sample' });
  }

  protected override async onStop(): Promise<void> {
    await this.#close();
  }

  protected async handle(msg: MetricsMsg): Promise<void> {
    switch (msg.type) {
      case 'sample':
        return this.#sample();
      case 'failed':
        throw msg.error;
      default:
        return assertNever(msg);
    }
  }

  protected override inspect(): MetricsState {
    return {
      url: this.url,
      ...this.#stats,
      lastSampleAt: this.#lastSampleAt === null ? null : new Date(this.#lastSampleAt).toISOString(),
    };
  }

  /** Takes a sample now and resolves when it is in the registry (for tests and a first scrape). */
  sampleNow(timeoutMs = 10_000): Promise<void> {
    return this.ask({ type: 'sample' }, { timeoutMs });
  }

  async #sample(): Promise<void> {
    const h = this.#lag;
    const ns = (v: number) => (Number.isFinite(v) ? v / 1e9 : 0);
    this.#lagSeconds = { mean: ns(h.mean), p50: ns(h.percentile(50)), p99: ns(h.percentile(99)), max: ns(h.max) };
    h.reset();
    try {
      const [counts, limits] = await Promise.all([countJobsByQueueAndState(this.#o.db), listLimits(this.#o.db)]);
      // Reset first: a queue that emptied must not keep its last value.
      this.#queueJobs.reset();
      for (const c of counts) this.#queueJobs.set({ queue: c.queue, state: c.state }, c.count);
      this.#limits.set(limits);
      this.#lastSampleAt = Date.now();
      this.#stats.samples++;
      this.#samples.inc();
    } catch (err) {
      // The database may be restarting: keep the last sample (its age gauge grows) and try next time.
      this.#stats.sampleErrors++;
      this.logger.warn({ err }, 'metrics: could not count jobs by queue and state, or read the limits');
    }
  }

  async #listen(port: number): Promise<void> {
    const server = createServer((req, res) => this.#serve(req, res));
    server.on('error', (error) => {
      if (server.listening) this.send({ type: 'failed', error });
    });
    this.#server = server;
    this.#port = await listen(server, { host: this.#host, port });
    this.logger.info({ url: this.url }, 'metrics listening');
  }

  #serve(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    this.#stats.scrapes++;
    this.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': this.registry.contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        this.logger.error({ err }, 'metrics: could not render the registry');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('could not render the metrics\n');
      },
    );
  }

  async #close(): Promise<void> {
    for (const off of this.#offs.splice(0)) off();
    this.#lag.disable();
    const server = this.#server;
    this.#server = null;
    this.#port = null;
    if (server) await closeServer(server);
  }
}
