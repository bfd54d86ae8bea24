/**
 * Supervisor options: defaults < environment < explicit, validated once at start with messages
 * that say what is wrong.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts';
import { ValidationError } from './errors.ts';
import type { JobState } from './job.ts';
import { checkInteger, checkName, describe } from './validate.ts';
import { DEFAULT_WORKFLOW_LIMITS, type WorkflowLimits } from './workflows/limits.ts';

const SECOND = 1_000;
const DAY = 24 * 3_600 * SECOND;

/** Options of startSupervisor() and `spindle start`. */
export interface SupervisorOptions {
  /** PostgreSQL URL; DATABASE_URL, else an embedded server in `<stateDir>/pg`. With `pooler: 'transaction'`, the pooler's URL. */
  databaseUrl?: string;
  /**
   * What sits between this supervisor and PostgreSQL on `databaseUrl`: `'none'` (default) or
   * `'session'` (a session pooler: the same as none), or `'transaction'` (PgBouncer in transaction
   * pooling mode, any version): statements are sent unnamed, claim settings are set per
   * transaction, and what needs a session of its own goes to `sessionDatabaseUrl`.
   */
  pooler?: Pooler;
  /**
   * A PostgreSQL URL that keeps a session (PostgreSQL itself, or a session pooler) for what a
   * transaction pooler cannot carry: LISTEN, the leader's advisory lock (one session for both) and
   * migrations. Required with `pooler: 'transaction'`; otherwise `databaseUrl`.
   */
  sessionDatabaseUrl?: string;
  /** A directory of worker modules, or a `{ type: path }` map; default ./workers. */
  workers?: string | Record<string, string>;
  /** A directory of workflow modules (absent: none), or a `{ name: path }` map; default ./workflows. */
  workflows?: string | Record<string, string>;
  /** Bounds on each workflow run (steps, result sizes, compensation attempts). */
  workflowLimits?: Partial<WorkflowLimits>;
  /** Worker threads; default the machine's available parallelism. */
  concurrency?: number;
  /** Queues to serve; default every queue. */
  queues?: string[];
  /** Where the embedded database, the debug socket and state files live; default ./.spindle. */
  stateDir?: string;
  /** Supervisor id in the database; default host-pid-random. */
  id?: string;
  /** How often this supervisor says it is alive and extends its leases; default 5 s. */
  heartbeatMs?: number;
  /**
   * How long a claim is valid without a heartbeat, default 15 s (3 heartbeats): how long a supervisor
   * that stops heartbeating keeps its jobs, and so how soon they run again after it dies.
   */
  leaseMs?: number;
  /** How often the leader looks for lost jobs. */
  reaperIntervalMs?: number;
  /** How often to look for jobs when no NOTIFY came (a fallback). */
  pollMs?: number;
  /** Time a job gets when neither it nor its module says; 0 means none. */
  defaultTimeoutMs?: number;
  /** After a timeout or cancel, how long the handler has to return before its thread is terminated. */
  abortGraceMs?: number;
  /** On SIGINT/SIGTERM, how long running jobs may take to finish before they are put back. */
  shutdownTimeoutMs?: number;
  /** Retry delays; a worker module's `options.backoff` overrides them for its type. */
  backoff?: BackoffOptions;
  /** How often progress is written to the database. */
  progressFlushMs?: number;
  /** How long finished jobs are kept, per state. */
  retentionMs?: Partial<Record<'succeeded' | 'failed' | 'timed_out' | 'cancelled', number>>;
  /** Queued jobs of a type no supervisor serves fail once every supervisor is up this long. */
  unknownTypeGraceMs?: number;
  /** Debug socket path, or false for none; default `<stateDir>/run/supervisor.sock`. */
  socket?: string | false;
  /** A TCP port on 127.0.0.1 for the debug protocol (0: any free port); each request must carry the token in `<stateDir>/run/debug.token`. Default none. */
  debugPort?: number;
  /** A TCP port for Prometheus metrics at `/metrics` (0: any free port). Default none. */
  metricsPort?: number;
  /** The address the metrics port binds; default 127.0.0.1. */
  metricsHost?: string;
  /** How often queue depth (jobs by queue and state) is counted for the metrics, in one query. */
  metricsSampleMs?: number;
  /** A TCP port for the HTTP API and the dashboard (0: any free port); the API needs the token in `<stateDir>/run/http.token`. Default none. */
  httpPort?: number;
  /** The address the HTTP port binds; default 127.0.0.1. */
  httpHost?: string;
  /** Log level of the default pino logger. */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /**
   * Jobs claimed beyond the free threads, so threads never wait for a claim round trip.
   * Default: adaptive, about 50 ms of work at the observed run time (short jobs claim in big batches).
   */
  prefetch?: number;
}

/** What sits between a supervisor and PostgreSQL (see SupervisorOptions.pooler). */
export type Pooler = 'none' | 'session' | 'transaction';

const POOLERS: readonly Pooler[] = ['none', 'session', 'transaction'];

/** Every option, filled in. */
export interface SupervisorConfig {
  databaseUrl: string | undefined;
  pooler: Pooler;
  /** Undefined: the same as databaseUrl. */
  sessionDatabaseUrl: string | undefined;
  workers: string | Record<string, string>;
  workflows: string | Record<string, string>;
  workflowLimits: WorkflowLimits;
  concurrency: number;
  queues: string[];
  stateDir: string;
  id: string | undefined;
  heartbeatMs: number;
  leaseMs: number;
  reaperIntervalMs: number;
  pollMs: number;
  defaultTimeoutMs: number;
  abortGraceMs: number;
  shutdownTimeoutMs: number;
  backoff: BackoffOptions;
  progressFlushMs: number;
  retentionMs: Record<'succeeded' | 'failed' | 'timed_out' | 'cancelled', number>;
  unknownTypeGraceMs: number;
  socket: string | false;
  debugPort: number | undefined;
  metricsPort: number | undefined;
  metricsHost: string;
  metricsSampleMs: number;
  httpPort: number | undefined;
  httpHost: string;
  logLevel: NonNullable<SupervisorOptions['logLevel']>;
  /** Undefined: adaptive. */
  prefetch: number | undefined;
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
const MAX_MS = 2_147_483_647;

/** The options read from the environment (SPINDLE_*, DATABASE_URL). */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): SupervisorOptions {
  const out: SupervisorOptions = {};
  if (env.DATABASE_URL) out.databaseUrl = env.DATABASE_URL;
  if (env.SPINDLE_POOLER) out.pooler = env.SPINDLE_POOLER as Pooler;
  if (env.SPINDLE_SESSION_DATABASE_URL) out.sessionDatabaseUrl = env.SPINDLE_SESSION_DATABASE_URL;
  if (env.SPINDLE_WORKERS) out.workers = env.SPINDLE_WORKERS;
  if (env.SPINDLE_CONCURRENCY) out.concurrency = envInteger('SPINDLE_CONCURRENCY', env.SPINDLE_CONCURRENCY);
  if (env.SPINDLE_QUEUES) out.queues = env.SPINDLE_QUEUES.split(',').map((q) => q.trim()).filter(Boolean);
  if (env.SPINDLE_STATE_DIR) out.stateDir = env.SPINDLE_STATE_DIR;
  if (env.SPINDLE_LOG_LEVEL) out.logLevel = env.SPINDLE_LOG_LEVEL as SupervisorOptions['logLevel'];
  return out;
}

function envInteger(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n)) throw new ValidationError(name, `must be an integer, got ${JSON.stringify(text)}`);
  return n;
}

/** Fills in and validates supervisor options: defaults < environment < explicit. */
export function resolveConfig(explicit: SupervisorOptions = {}, env: NodeJS.ProcessEnv = process.env): SupervisorConfig {
  if (typeof explicit !== 'object' || explicit === null) {
    throw new ValidationError('options', `must be an object, got ${describe(explicit)}`);
  }
  const o: SupervisorOptions = { ...optionsFromEnv(env), ...stripUndefined(explicit) };
  const ms = (field: keyof SupervisorOptions, fallback: number, min = 1) =>
    checkInteger(`options.${field}`, o[field], min, MAX_MS) ?? fallback;

  const stateDir = resolve(typeof o.stateDir === 'string' ? o.stateDir : '.spindle');
  const heartbeatMs = ms('heartbeatMs', 5 * SECOND, 10);
  const leaseMs = ms('leaseMs', 15 * SECOND, 10);
  if (leaseMs <= heartbeatMs) {
    throw new ValidationError('options.leaseMs', `must be longer than options.heartbeatMs (${heartbeatMs}), got ${leaseMs}`);
  }
  const concurrency = checkInteger('options.concurrency', o.concurrency, 1, 1024) ?? availableParallelism();

  if (o.workers !== undefined && typeof o.workers !== 'string' && (typeof o.workers !== 'object' || o.workers === null)) {
    throw new ValidationError('options.workers', `must be a directory or a { type: path } map, got ${describe(o.workers)}`);
  }
  if (o.queues !== undefined && !Array.isArray(o.queues)) {
    throw new ValidationError('options.queues', `must be an array of queue names, got ${describe(o.queues)}`);
  }
  const queues = (o.queues ?? []).map((q, i) => checkName(`options.queues[${i}]`, q));
  if (o.logLevel !== undefined && !LOG_LEVELS.includes(o.logLevel)) {
    throw new ValidationError('options.logLevel', `must be one of ${LOG_LEVELS.join(', ')}, got ${describe(o.logLevel)}`);
  }
  if (o.socket !== undefined && o.socket !== false && typeof o.socket !== 'string') {
    throw new ValidationError('options.socket', `must be a path or false, got ${describe(o.socket)}`);
  }
  if (o.databaseUrl !== undefined && (typeof o.databaseUrl !== 'string' || o.databaseUrl === '')) {
    throw new ValidationError('options.databaseUrl', `must be a PostgreSQL URL, got ${describe(o.databaseUrl)}`);
  }
  const pooler = checkPooler(o);
  if (o.id !== undefined && (typeof o.id !== 'string' || !/^[A-Za-z0-9_.:@-]{1,128}$/.test(o.id))) {
    throw new ValidationError('options.id', `must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -, got ${describe(o.id)}`);
  }
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  if (typeof backoff !== 'object' || backoff === null) {
    throw new ValidationError('options.backoff', `must be { baseMs, maxMs }, got ${describe(backoff)}`);
  }
  const retention = o.retentionMs ?? {};
  const keep = (state: JobState & keyof SupervisorConfig['retentionMs'], fallback: number) =>
    checkInteger(`options.retentionMs.${state}`, retention[state], 0, Number.MAX_SAFE_INTEGER) ?? fallback;

  return {
    databaseUrl: o.databaseUrl,
    pooler,
    sessionDatabaseUrl: o.sessionDatabaseUrl,
    workers: o.workers ?? resolve('workers'),
    workflows: checkWorkflows(o.workflows) ?? resolve('workflows'),
    workflowLimits: checkWorkflowLimits(o.workflowLimits),
    concurrency,
    queues,
    stateDir,
    id: o.id,
    heartbeatMs,
    leaseMs,
    reaperIntervalMs: ms('reaperIntervalMs', 2 * SECOND, 10),
    pollMs: ms('pollMs', 2 * SECOND, 10),
    defaultTimeoutMs: ms('defaultTimeoutMs', 0, 0),
    abortGraceMs: ms('abortGraceMs', SECOND, 0),
    shutdownTimeoutMs: ms('shutdownTimeoutMs', 10 * SECOND, 0),
    backoff: {
      baseMs: checkInteger('options.backoff.baseMs', backoff.baseMs, 0, MAX_MS) ?? DEFAULT_BACKOFF.baseMs,
      maxMs: checkInteger('options.backoff.maxMs', backoff.maxMs, 0, MAX_MS) ?? DEFAULT_BACKOFF.maxMs,
    },
    progressFlushMs: ms('progressFlushMs', 200, 1),
    retentionMs: {
      succeeded: keep('succeeded', 7 * DAY),
      failed: keep('failed', 30 * DAY),
      timed_out: keep('timed_out', 30 * DAY),
      cancelled: keep('cancelled', 30 * DAY),
    },
    unknownTypeGraceMs: ms('unknownTypeGraceMs', 60 * SECOND, 0),
    socket: o.socket === false ? false : resolve(o.socket ?? `${stateDir}/run/supervisor.sock`),
    debugPort: checkInteger('options.debugPort', o.debugPort, 0, 65_535),
    metricsPort: checkInteger('options.metricsPort', o.metricsPort, 0, 65_535),
    metricsHost: checkHost('options.metricsHost', o.metricsHost),
    metricsSampleMs: ms('metricsSampleMs', 10 * SECOND, 100),
    httpPort: checkInteger('options.httpPort', o.httpPort, 0, 65_535),
    httpHost: checkHost('options.httpHost', o.httpHost),
    logLevel: o.logLevel ?? 'info',
    prefetch: checkInteger('options.prefetch', o.prefetch, 0, 100_000),
  };
}

/**
 * The pooler and the session URL it needs: a transaction pooler cannot carry LISTEN or the leader's
 * session lock, so those need a URL of their own, and the embedded server has no pooler in front.
 */
function checkPooler(o: SupervisorOptions): Pooler {
  const pooler = o.pooler ?? 'none';
  if (!POOLERS.includes(pooler)) {
    throw new ValidationError('options.pooler', `must be one of ${POOLERS.join(', ')}, got ${describe(o.pooler)}`);
  }
  if (o.sessionDatabaseUrl !== undefined && (typeof o.sessionDatabaseUrl !== 'string' || o.sessionDatabaseUrl === '')) {
    throw new ValidationError('options.sessionDatabaseUrl', `must be a PostgreSQL URL, got ${describe(o.sessionDatabaseUrl)}`);
  }
  if (pooler === 'transaction') {
    if (o.databaseUrl === undefined) {
      throw new ValidationError('options.databaseUrl', "must be the pooler's URL with options.pooler 'transaction' (the embedded database has no pooler)");
    }
    if (o.sessionDatabaseUrl === undefined) {
      throw new ValidationError(
        'options.sessionDatabaseUrl',
        "is required with options.pooler 'transaction': LISTEN and the leader lock need a session (PostgreSQL itself, or a session pooler)",
      );
    }
  }
  return pooler;
}

/** A host name or IP address to bind; default 127.0.0.1 (only this machine). */
function checkHost(field: string, value: unknown): string {
  if (value === undefined) return '127.0.0.1';
  if (typeof value !== 'string' || !/^[A-Za-z0-9.:_-]{1,253}$/.test(value)) {
    throw new ValidationError(field, `must be a host name or IP address, got ${describe(value)}`);
  }
  return value;
}

function checkWorkflows(value: unknown): string | Record<string, string> | undefined {
  if (value === undefined || typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError('options.workflows', `must be a directory or a { name: path } map, got ${describe(value)}`);
  }
  return value as Record<string, string>;
}

function checkWorkflowLimits(value: Partial<WorkflowLimits> | undefined): WorkflowLimits {
  if (value === undefined) return DEFAULT_WORKFLOW_LIMITS;
  if (typeof value !== 'object' || value === null) {
    throw new ValidationError('options.workflowLimits', `must be an object, got ${describe(value)}`);
  }
  const limit = (key: keyof WorkflowLimits, max: number) =>
    checkInteger(`options.workflowLimits.${key}`, value[key], 1, max) ?? DEFAULT_WORKFLOW_LIMITS[key];
  return {
    maxSteps: limit('maxSteps', 1_000_000),
    maxStepResultBytes: limit('maxStepResultBytes', 256 * 1024 * 1024),
    maxStateBytes: limit('maxStateBytes', 1024 * 1024 * 1024),
    compensationAttempts: limit('compensationAttempts', 1_000),
    maxIdleMs: limit('maxIdleMs', 24 * 3_600_000),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
