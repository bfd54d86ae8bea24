/** Leader election: an advisory lock held by the elector's own session. */
import { createHash } from 'node:crypto';
import type { Queryable } from './queryable.ts';

/** The leader lock: advisory lock (SPINDLE_LOCK_SPACE, 1), two-key form so pg_locks shows it plainly. */
const LOCK_SPACE = 0x5350;
const LEADER_KEY = 1;
const ELECTOR_PREFIX = 'spindle:elector:';

/** PostgreSQL keeps this many bytes of an application_name. */
const MAX_APPLICATION_NAME_BYTES = 63;

/**
 * The application_name of a supervisor's elector connection: how a candidate finds which supervisor
 * holds the leader lock. An id too long to fit is replaced by a digest that endStaleLeader() computes too.
 */
export function electorApplicationName(supervisorId: string): string {
  const name = ELECTOR_PREFIX + supervisorId;
  if (Buffer.byteLength(name) <= MAX_APPLICATION_NAME_BYTES) return name;
  return `${ELECTOR_PREFIX}#${createHash('sha256').update(supervisorId, 'utf8').digest('hex').slice(0, 16)}`;
}

/** electorApplicationName() in SQL, of `s.id`. */
const ELECTOR_NAME_SQL = `CASE WHEN octet_length('${ELECTOR_PREFIX}' || s.id) <= ${MAX_APPLICATION_NAME_BYTES}
  THEN '${ELECTOR_PREFIX}' || s.id
  ELSE '${ELECTOR_PREFIX}#' || left(encode(sha256(convert_to(s.id, 'UTF8')), 'hex'), 16) END`;

/**
 * The application_name of the session that holds the leader lock in this database (none, or one
 * row): a read of pg_locks, so listings can say which supervisor leads without asking any of them.
 */
export const LEADER_SESSION_SQL = `SELECT a.application_name
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'advisory' AND l.classid = ${LOCK_SPACE} AND l.objid = ${LEADER_KEY} AND l.objsubid = 2 AND l.granted
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`;

/** SQL, true when the supervisor row `s` is the leader's: its elector's session holds the lock (LEADER_SESSION_SQL as `leader`). */
export const IS_LEADER_SQL = `EXISTS (SELECT 1 FROM leader WHERE leader.application_name = ${ELECTOR_NAME_SQL})`;

/** Tries to take the leader lock on this session; true if it is now held by this session. */
export async function tryLeaderLock(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [LOCK_SPACE, LEADER_KEY]);
  return rows[0]!.ok;
}

/** Gives the leader lock back, where the session outlives the lead (shared with LISTEN); false when it was not held. */
export async function releaseLeaderLock(db: Queryable): Promise<boolean> {
  // pg_advisory_unlock warns when the lock is not held; the locks held are read first to stay quiet.
  const { rows } = await db.query<{ released: boolean }>(
    `SELECT coalesce(bool_or(pg_advisory_unlock($1, $2)), false) AS released FROM pg_locks
      WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted`,
    [LOCK_SPACE, LEADER_KEY],
  );
  return rows[0]!.released;
}

/** True while this session holds the leader lock: the check a leader makes on every tick. */
export async function holdsLeaderLock(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                      AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted) AS held`,
    [LOCK_SPACE, LEADER_KEY],
  );
  return rows[0]!.held;
}

/**
 * How long ending a stale leader's session waits for its backend to exit, and so for its lock to be
 * free: the caller tries the lock right after.
 */
const TERMINATE_WAIT_MS = 1_000;

/**
 * Ends the session of a leader whose supervisor is unseen for `deadAfterBeats` of its heartbeats
 * (paused, or its process wedged): its lock goes with the session, so another supervisor can lead.
 * Only this database's lock counts (advisory locks are per database). Returns the application
 * names' suffixes (supervisor ids) ended.
 */
export async function endStaleLeader(db: Queryable, deadAfterBeats: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT substr(a.application_name, ${ELECTOR_PREFIX.length + 1}) AS id, pg_terminate_backend(a.pid, $4) AS ended
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND a.pid <> pg_backend_pid()
        AND a.application_name LIKE '${ELECTOR_PREFIX}%'
        AND NOT EXISTS (
          SELECT 1 FROM spindle.supervisors s
           WHERE a.application_name = ${ELECTOR_NAME_SQL}
             AND s.last_seen_at >= now() - $3 * s.heartbeat_ms * interval '1 millisecond')`,
    [LOCK_SPACE, LEADER_KEY, deadAfterBeats, TERMINATE_WAIT_MS],
  );
  return rows.map((r) => r.id);
}
