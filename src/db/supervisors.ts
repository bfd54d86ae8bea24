/** The list of supervisors: registration, heartbeat, removal on a clean stop, listing. */
import { IS_LEADER_SQL, LEADER_SESSION_SQL } from './leader.ts';
import type { Queryable } from './queryable.ts';

/** What a supervisor says of itself when it registers and on every heartbeat. */
export interface SupervisorRecord {
  id: string;
  host: string;
  pid: number;
  version: string;
  /** Empty means every queue. */
  queues: string[];
  types: string[];
  concurrency: number;
  /** Its heartbeat interval: it is dead when unseen for a few of these. */
  heartbeatMs: number;
}

/**
 * Registers a supervisor at start. A row with the same id is an earlier run of this supervisor (a
 * fixed `id`, restarted): it is replaced, and the jobs that run still holds get an expired lease, so
 * the reaper hands them back at its next sweep instead of after the lease.
 */
export async function registerSupervisor(db: Queryable, s: SupervisorRecord): Promise<void> {
  await db.query(
    `WITH registered AS (
       INSERT INTO spindle.supervisors (id, host, pid, version, queues, types, concurrency, heartbeat_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (id) DO UPDATE
         SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, queues = EXCLUDED.queues,
             types = EXCLUDED.types, concurrency = EXCLUDED.concurrency, heartbeat_ms = EXCLUDED.heartbeat_ms,
             started_at = now(), last_seen_at = now()
     )
     UPDATE spindle.jobs SET lease_expires_at = now()
      WHERE id IN (SELECT id FROM spindle.jobs WHERE worker_id = $1 AND state = 'running' ORDER BY id FOR UPDATE)
        AND worker_id = $1 AND state = 'running'`,
    [s.id, s.host, s.pid, s.version, s.queues, s.types, s.concurrency, s.heartbeatMs],
  );
}

/** Deregisters a supervisor on a clean stop. */
export async function removeSupervisor(db: Queryable, id: string): Promise<void> {
  await db.query('DELETE FROM spindle.supervisors WHERE id = $1', [id]);
}

/** A registered supervisor, as the Client's supervisors() and `spindle supervisors` show it. */
export interface SupervisorInfo extends SupervisorRecord {
  startedAt: Date;
  lastSeenAt: Date;
  /** Jobs it holds now. */
  running: number;
  /** Since it started, and since it was last seen, by the database's clock (this machine's may be off). */
  upMs: number;
  lastSeenMs: number;
  /** It heartbeats; a dead one stays listed until the leader removes it (its jobs come back as their leases end). */
  live: boolean;
  /** Its elector holds the leader lock now (read from pg_locks, so no supervisor is asked). */
  leader: boolean;
}

/** Every registered supervisor, oldest first, with the jobs it holds and whether it leads; dead when unseen for `deadAfterBeats` beats. */
export async function listSupervisors(db: Queryable, deadAfterBeats: number): Promise<SupervisorInfo[]> {
  const { rows } = await db.query<SupervisorInfo>(
    `WITH leader AS (${LEADER_SESSION_SQL})
     SELECT s.id, s.host, s.pid, s.version, s.queues, s.types, s.concurrency, s.heartbeat_ms AS "heartbeatMs",
            s.started_at AS "startedAt", s.last_seen_at AS "lastSeenAt",
            (SELECT count(*)::int FROM spindle.jobs j WHERE j.worker_id = s.id AND j.state = 'running') AS running,
            (extract(epoch FROM now() - s.started_at) * 1000)::float8 AS "upMs",
            (extract(epoch FROM now() - s.last_seen_at) * 1000)::float8 AS "lastSeenMs",
            s.last_seen_at >= now() - $1 * s.heartbeat_ms * interval '1 millisecond' AS live,
            ${IS_LEADER_SQL} AS leader
       FROM spindle.supervisors s ORDER BY s.started_at`,
    [deadAfterBeats],
  );
  return rows;
}

/** What marking a supervisor seen found. */
export interface Seen {
  /** The row had to be inserted: a sweep had declared this supervisor dead. */
  inserted: boolean;
  /** Supervisors seen within their last `deadAfterBeats` heartbeats, this one included. */
  live: number;
}

/**
 * Marks a supervisor seen (registering it again if a sweep had removed it), and counts the live ones.
 * Its own statement, apart from the leases: it touches one row, so no lock on a job can delay or
 * undo it.
 */
export async function markSupervisorSeen(db: Queryable, s: SupervisorRecord, deadAfterBeats: number): Promise<Seen> {
  // xmax is 0 only in a row version this statement inserted; the conflict's update locks the row and
  // sets it. The count reads the table as it was before this statement: this supervisor is added.
  const { rows } = await db.query<Seen>({
    name: 'spindle.seen',
    text: `INSERT INTO spindle.supervisors (id, host, pid, version, queues, types, concurrency, heartbeat_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (id) DO UPDATE SET last_seen_at = now()
           RETURNING xmax = 0 AS inserted,
                     1 + (SELECT count(*)::int FROM spindle.supervisors o
                           WHERE o.id <> $1 AND o.last_seen_at >= now() - $9 * o.heartbeat_ms * interval '1 millisecond') AS live`,
    values: [s.id, s.host, s.pid, s.version, s.queues, s.types, s.concurrency, s.heartbeatMs, deadAfterBeats],
  });
  return rows[0]!;
}
