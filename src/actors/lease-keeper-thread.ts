/**
 * The lease keeper: a thread of its own beside the supervisor's main thread. While the main thread
 * is held up (a workflow step that computes, a long pause) it cannot beat, and its leases would end
 * while its work goes on: another supervisor would take the work over and run it again. So the
 * keeper, hearing nothing from the main thread for a beat and a half, stands in: it marks the
 * supervisor seen and extends the leases of what the main thread held at its last beat (fenced, as
 * the heartbeat's: a lease of a job or run no longer held is not extended). It stands in for at most
 * `maxStandInMs`, so the work of a main thread that never comes back goes elsewhere.
 */
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import { extendLeases } from '../db/leases.ts';
import { POOLED_APPLICATION_NAME, UnnamedStatementClient } from '../db/pooler.ts';
import { markSupervisorSeen, type SupervisorRecord } from '../db/supervisors.ts';
import { extendWorkflowLeases } from '../db/workflows.ts';
import { DEAD_AFTER_HEARTBEATS } from '../liveness.ts';

export interface KeeperSettings {
  connectionString: string;
  /** The connection goes through a transaction pooler: statements unnamed, one application_name (db/pooler.ts). */
  transactionPooler: boolean;
  record: SupervisorRecord;
  /** The heartbeat's interval: the keeper stands in after 1.5 of them without a word. */
  intervalMs: number;
  leaseMs: number;
  maxStandInMs: number;
}

/** What the main thread held at its last beat; each message also says it is alive. */
export interface KeeperHeld {
  jobs: { id: string; attempt: number }[];
  runs: { runId: string; claimSeq: number }[];
}

/** What the keeper tells the main thread once it speaks again. */
export interface KeeperReport {
  /** How long the main thread was silent, as the keeper saw it. */
  silentMs: number;
  /** The beats it made meanwhile, and those that failed. */
  beats: number;
  failed: number;
  lastError: string | null;
}

/** The keeper's loop; runs until the thread is terminated. */
export function keepLeases(settings: KeeperSettings = workerData as KeeperSettings): void {
  const port = parentPort!;
  let held: KeeperHeld = { jobs: [], runs: [] };
  let heardAt = performance.now();
  let report: KeeperReport | null = null;
  let client: pg.Client | null = null;
  let beating = false;

  port.on('message', (message: KeeperHeld) => {
    held = message;
    heardAt = performance.now();
    if (report) port.postMessage(report);
    report = null;
    // Back to the main thread's own beats: the keeper's connection is not needed until the next silence.
    void client?.end().catch(() => {});
    client = null;
  });

  const standIn = async () => {
    const silentMs = performance.now() - heardAt;
    if (beating || silentMs < settings.intervalMs * 1.5 || silentMs > settings.maxStandInMs) return;
    beating = true;
    // This beat's own report and connection: the main thread may speak (and reset both) meanwhile.
    const beat = (report ??= { silentMs: 0, beats: 0, failed: 0, lastError: null });
    beat.silentMs = Math.round(silentMs);
    let db = client;
    try {
      if (!db) {
        db = new (settings.transactionPooler ? UnnamedStatementClient : pg.Client)({
          connectionString: settings.connectionString,
          application_name: settings.transactionPooler ? POOLED_APPLICATION_NAME : `spindle:keeper:${settings.record.id}`.slice(0, 63),
          connectionTimeoutMillis: settings.intervalMs,
        });
        db.on('error', () => {});
        client = db;
        await db.connect();
      }
      const { record, leaseMs } = settings;
      await markSupervisorSeen(db, record, DEAD_AFTER_HEARTBEATS);
      const { jobs, runs } = held;
      if (jobs.length > 0) {
        await extendLeases(db, { supervisorId: record.id, leaseMs, ids: jobs.map((j) => j.id), attempts: jobs.map((j) => j.attempt) });
      }
      if (runs.length > 0) await extendWorkflowLeases(db, record.id, runs, leaseMs);
      beat.beats += 1;
    } catch (error) {
      beat.failed += 1;
      beat.lastError = error instanceof Error ? error.message : String(error);
      void db?.end().catch(() => {});
      if (client === db) client = null;
    } finally {
      beating = false;
    }
  };
  setInterval(() => void standIn(), Math.max(10, Math.round(settings.intervalMs / 2)));
}
