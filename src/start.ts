/** startSupervisor(): everything `spindle start` does, as a function. */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { Supervisor } from './actors/supervisor.ts';
import { Client } from './client.ts';
import { resolveConfig, type SupervisorConfig, type SupervisorOptions } from './config.ts';
import { migrate } from './db/migrate.ts';
import { claimJobs, CLAIM_CONNECTION_OPTIONS } from './db/claims.ts';
import { finishJobs } from './db/outcomes.ts';
import { endPool, hearDrops } from './db/queryable.ts';
import { POOLED_APPLICATION_NAME, poolClientFor } from './db/pooler.ts';
import { createLogger, type Logger, type PinoLogger } from './logger.ts';
import type { DebugLimits } from './ops/debug-server.ts';
import { ensureSocketFree } from './ops/debug-socket-file.ts';
import { opsServers } from './ops/servers.ts';
import { WorkerPool } from './pool/pool.ts';
import { loadRegistry } from './pool/registry.ts';
import { loadWorkflows } from './workflows/registry.ts';
import { collectSchedules } from './workflows/schedules.ts';

/** Options of startSupervisor(): the supervisor's, plus a logger of your own. */
export interface StartOptions extends SupervisorOptions {
  /** A pino logger; default one at `logLevel` on stderr. */
  logger?: PinoLogger;
  /** Limits of the debug socket (clients, idle time, buffers); the defaults suit production. */
  debugLimits?: Partial<DebugLimits>;
}

/** A running supervisor. */
export interface SupervisorHandle {
  /** Its id in spindle.supervisors. */
  id: string;
  /** The database it uses (the embedded one's URL when none was given). */
  databaseUrl: string;
  config: SupervisorConfig;
  supervisor: Supervisor;
  /** Every actor's state, the in-flight jobs and the pool. */
  snapshot(): RuntimeSnapshot;
  /** Graceful shutdown (see ARCHITECTURE.md): resolves when everything is written and closed. */
  stop(): Promise<void>;
}

/** What snapshot() returns. */
export interface RuntimeSnapshot {
  supervisorId: string;
  pid: number;
  host: string;
  uptimeMs: number;
  versions: { spindle: string; node: string };
  actors: ReturnType<Supervisor['snapshot']>;
  jobs: ReturnType<Supervisor['jobs']>;
  pool: ReturnType<WorkerPool['stats']>;
}

import { VERSION } from './version.ts';

export { VERSION };

/**
 * Starts a supervisor: the embedded database unless one is given, migrations, worker modules,
 * the thread pool and the actors. Stop it with `stop()`.
 */
export async function startSupervisor(options: StartOptions = {}): Promise<SupervisorHandle> {
  const config = resolveConfig(options);
  const logger = options.logger ?? createLogger(config.logLevel);
  const started = Date.now();
  const cleanup: (() => Promise<void>)[] = [];
  const undo = async () => {
    for (const step of cleanup.reverse()) await step().catch(() => {});
  };

  try {
    // One thread starts loading first thing, alone, so that it is ready (and has probed the worker
    // modules) as soon as it can be: threads starting side by side on few cores are each ready later.
    // The others start once the supervisor has started (startThreads), or earlier as jobs need them.
    const pool = new WorkerPool({ maxThreads: config.concurrency, initialThreads: 1, abortGraceMs: config.abortGraceMs });
    pool.on('thread:error', (e) => logger.warn({ thread: e.threadId, job: e.jobId, type: e.jobType, error: e.error.message }, 'error in a worker thread'));
    cleanup.push(() => pool.close({ force: true }));
    // Refuse before the database starts when another supervisor serves this debug socket.
    if (config.socket !== false) await ensureSocketFree(config.socket);
    const id = config.id ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    // Independent of each other, so side by side: the database and its migrations (then the
    // supervisor's connections, opened while the rest gets ready), the probe of the worker modules
    // (on a thread of the pool, which keeps them loaded), the workflow modules (imported here:
    // their bodies run on this thread).
    const [{ databaseUrl, db, fastDb }, registry, workflows] = await allSettled([
      openDatabase(config, logger, cleanup).then((url) => openPools(url, config, id, logger, cleanup)),
      loadRegistry(config.workers, { pool }),
      loadWorkflows(config.workflows),
    ]);
    for (const info of registry.values()) {
      if (info.loadError) logger.error({ type: info.type, error: info.loadError }, 'worker module cannot load; its jobs will fail');
    }
    if (registry.size === 0) logger.warn({ workers: config.workers }, 'no worker modules found: nothing to run');
    for (const [name, error] of workflows.broken) {
      logger.error({ workflow: name, error }, 'workflow module cannot load; its runs will be blocked');
    }
    const schedules = collectSchedules(registry, workflows, (message) => logger.error({}, message));
    const buildOpsServers = await opsServers(config, options.debugLimits);

    const snapshot = (): RuntimeSnapshot => ({
      supervisorId: id,
      pid: process.pid,
      host: hostname(),
      uptimeMs: Date.now() - started,
      versions: { spindle: VERSION, node: process.version },
      actors: supervisor.snapshot(),
      jobs: supervisor.jobs(),
      pool: pool.stats(),
    });
    const supervisor: Supervisor = new Supervisor({
      id,
      config,
      databaseUrl,
      sessionDatabaseUrl: config.sessionDatabaseUrl ?? databaseUrl,
      db,
      fastDb,
      registry,
      pool,
      version: VERSION,
      logger,
      // The ops servers read the supervisor's events, actors and jobs, never the supervisor itself;
      // as its children they start after its own actors and stop before them.
      children: () =>
        buildOpsServers({
          id,
          version: VERSION,
          events: supervisor.events,
          root: supervisor,
          jobs: () => supervisor.jobs(),
          pool: () => pool.stats(),
          snapshot,
          db,
          fastDb,
          // The API's Client LISTENs (waits, watches): a session's URL.
          openApi: () => new Client({ connectionString: config.sessionDatabaseUrl ?? databaseUrl, maxConnections: 4 }),
        }).map((actor) => ({ actor, supervision: { policy: 'restart' } })),
      workflows,
      schedules,
    });
    await supervisor.start();
    cleanup.push(() => supervisor.shutdown());
    // The first claim is under way: the other threads start now (Piscina starts them as soon as the
    // claim brings more jobs than one thread takes).
    pool.startThreads();
    logger.info(
      { id, concurrency: config.concurrency, types: [...registry.keys()], queues: config.queues.length ? config.queues : 'all' },
      'supervisor started',
    );

    let stopping: Promise<void> | undefined;
    return {
      id,
      databaseUrl,
      config,
      supervisor,
      snapshot,
      stop: () => (stopping ??= undo().then(() => logger.info({ id }, 'supervisor stopped'))),
    };
  } catch (error) {
    await undo();
    throw error;
  }
}

/** The database's URL: the given one, or the embedded server's (joined, and left by `cleanup`). */
async function openDatabase(config: SupervisorConfig, logger: Logger, cleanup: (() => Promise<void>)[]): Promise<string> {
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    const { startEmbedded } = await import('./db/embedded.ts');
    const server = await startEmbedded({ stateDir: config.stateDir, logger });
    cleanup.push(() => server.stop());
    databaseUrl = server.url;
    logger.info({ dataDir: server.dataDir, port: server.port, reused: server.reused }, 'embedded PostgreSQL running');
  }
  return databaseUrl;
}

/** The least time a statement of the supervisor's pools is given before it counts as failed. */
const MIN_STATEMENT_BOUND_MS = 2_000;
const MIN_BATCH_STATEMENT_BOUND_MS = 10_000;

/**
 * The supervisor's two pools, each with connections opened now (a new server backend costs a round
 * trip or more), so that the registration and the first claim do not wait for one; the database
 * migrated on one of them.
 *
 * Every statement is bounded on the client's side (`query_timeout`; the connection is then dropped).
 * Over a link that went down, a statement gets neither an answer nor an error (nothing resets the
 * connection): unbounded, it would hang until TCP gives up, minutes later, holding its actor's
 * mailbox. fastDb's statements are short (claims, leases, progress): a beat not back within an
 * interval fails and is tried again on a new connection while the leases last. db's carry batches
 * and sweeps: a lease, and at least 10 s.
 */
async function openPools(
  databaseUrl: string,
  config: SupervisorConfig,
  id: string,
  logger: Logger,
  cleanup: (() => Promise<void>)[],
): Promise<{ databaseUrl: string; db: pg.Pool; fastDb: pg.Pool }> {
  // The id in application_name lets an operator (and the fault tests) tell whose connection is whose.
  // Through a transaction pooler a server session serves every supervisor in turn, and PgBouncer
  // sends a SET application_name each time the name changes hands: one name for all of them.
  const transactionPooler = config.pooler === 'transaction';
  const settings: pg.PoolConfig = {
    connectionString: databaseUrl,
    application_name: transactionPooler ? POOLED_APPLICATION_NAME : `spindle:supervisor:${id}`.slice(0, 63),
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
  };
  // Through a transaction pooler: statements unnamed, and the claim settings set by each claim
  // (db/pooler.ts, db/claims.ts), as no session outlives a transaction there.
  const db = new pg.Pool({
    ...settings,
    ...poolClientFor(transactionPooler),
    max: 4,
    query_timeout: Math.max(config.leaseMs, MIN_BATCH_STATEMENT_BOUND_MS),
  });
  // Claims, lease extensions and progress: see CLAIM_CONNECTION_OPTIONS. Outcomes stay on `db`,
  // durable before they are acknowledged.
  const fastDb = new pg.Pool({
    ...settings,
    ...poolClientFor(transactionPooler),
    max: 2,
    ...(transactionPooler ? {} : { options: CLAIM_CONNECTION_OPTIONS }),
    query_timeout: Math.max(config.heartbeatMs, MIN_STATEMENT_BOUND_MS),
  });
  // An idle connection that dies (restarted server) is replaced on the next query; it must not crash us.
  for (const pool of [db, fastDb]) {
    pool.on('error', (err) => logger.warn({ err }, 'database connection lost'));
    // A pool hears 'error' only on idle clients: a connection that drops while checked out (a
    // transaction, the warm-up below) must fail its statement, not end the process.
    pool.on('connect', (client) => hearDrops(client));
  }
  cleanup.push(() => endPool(db), () => endPool(fastDb));
  // Opened now, each a new server backend (a round trip or more): three of db (the registration, the
  // first outcomes, the leader's first sweeps beside them), two of fastDb (the first claim, the
  // heartbeat's first beat). One of db migrates first. A connection that fails here is tried again,
  // and reported, by the statement that needs it; the one that migrates must not fail.
  const opening = [db, db, fastDb, fastDb].map((pool) => pool.connect().catch(() => undefined));
  const migrating = await db.connect();
  try {
    // Migrations hold a session's advisory lock across their transactions: never through a
    // transaction pooler (config requires the session URL there).
    const applied = await migrate(transactionPooler ? config.sessionDatabaseUrl! : migrating);
    if (applied.length) logger.info({ applied }, 'migrated the database');
  } catch (error) {
    migrating.release(error as Error);
    for (const client of await Promise.all(opening)) client?.release();
    throw error;
  }
  const [second, third, ...claiming] = await Promise.all(opening);
  // A new backend plans a statement slowly the first time (its catalog caches are cold): the first
  // outcome and the first claim are run now, for no rows, on each connection that may run them,
  // while the threads are still getting ready.
  await Promise.all([
    ...[migrating, second, third].map((client) => client && finishJobs(client, id, []).catch(() => {})),
    ...claiming.map((client) => client && claimJobs(client, { supervisorId: id, queues: [], types: [], limit: 1, leaseMs: 1 }).catch(() => {})),
  ]);
  for (const client of [migrating, second, third, ...claiming]) client?.release();
  return { databaseUrl, db, fastDb };
}

/** Like Promise.all, but rejects only once every promise has settled: nothing is left starting while the caller undoes. */
async function allSettled<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
