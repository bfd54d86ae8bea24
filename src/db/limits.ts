/** Flow control in the database: limits and pauses stored, the limited claim, and why a job waits. */
import type { FlowLimits, FlowLimitsUpdate, LimitScope } from '../limits.ts';
import type { ClaimedJob, ClaimType } from './claims.ts';
import type { Queryable } from './queryable.ts';

/** Told when limits or pauses change: supervisors read them again and claim. */
export const LIMITS_CHANNEL = 'spindle_limits';

/** The scopes whose jobs only claim_limited takes (limited or paused). */
export interface ActiveScopes {
  types: Set<string>;
  queues: Set<string>;
  /** Those of them paused, as `type:NAME` or `queue:NAME` (what inspect shows). */
  paused: Set<string>;
}

export async function activeScopes(db: Queryable): Promise<ActiveScopes> {
  const { rows } = await db.query<{ kind: 'type' | 'queue'; name: string; paused: boolean }>(
    'SELECT kind, name, paused FROM spindle.flow_limits WHERE active',
  );
  const scopes: ActiveScopes = { types: new Set(), queues: new Set(), paused: new Set() };
  for (const r of rows) {
    (r.kind === 'type' ? scopes.types : scopes.queues).add(r.name);
    if (r.paused) scopes.paused.add(`${r.kind}:${r.name}`);
  }
  return scopes;
}

/** What one limited claim brought, and when a rate window next allows a start (ms), if one held it back. */
export interface LimitedClaim {
  jobs: ClaimedJob[];
  retryMs: number | null;
}

/** Claims up to `want` jobs of one limited scope, never past its limits (migration 0012, claim_limited). */
export async function claimLimited(
  db: Queryable,
  claim: { scope: LimitScope; supervisorId: string; queues: string[]; types: ClaimType[]; want: number; leaseMs: number },
): Promise<LimitedClaim> {
  const { rows } = await db.query<{ r: LimitedClaim }>({
    name: 'spindle.claim_limited',
    text: 'SELECT spindle.claim_limited($1, $2, $3::text[], $4::text[], $5::int[], $6, $7, $8) AS r',
    values: [
      claim.scope.kind,
      claim.scope.name,
      claim.types.map((t) => t.type),
      claim.queues,
      claim.types.map((t) => t.maxAttempts),
      claim.want,
      claim.supervisorId,
      claim.leaseMs,
    ],
  });
  return rows[0]!.r;
}

/**
 * What the worker modules of a supervisor declare, per type: a type whose module declares none
 * gets an empty set (a module that dropped its limits lifts them). Rows that would not change are
 * not written, so supervisors starting together do not queue on them.
 */
export async function writeModuleLimits(db: Queryable, declared: { type: string; limits: FlowLimits }[]): Promise<void> {
  if (declared.length === 0) return;
  await db.query(
    `WITH d AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS d(type text, limits jsonb)),
     written AS (
       INSERT INTO spindle.limits (kind, name, module)
       SELECT 'type', d.type, d.limits FROM d
        WHERE d.limits <> '{}' OR EXISTS (SELECT 1 FROM spindle.limits l WHERE l.kind = 'type' AND l.name = d.type)
       ON CONFLICT (kind, name) DO UPDATE SET module = excluded.module, updated_at = now()
        WHERE limits.module IS DISTINCT FROM excluded.module
       RETURNING 1
     )
     SELECT pg_notify('${LIMITS_CHANNEL}', '') FROM (SELECT 1 FROM written LIMIT 1) w`,
    [JSON.stringify(declared)],
  );
}

/** Merges an operator's limits into the scope's (null lifts a module's limit); returns the row after. */
export async function setOperatorLimits(db: Queryable, scope: LimitScope, update: FlowLimitsUpdate): Promise<LimitRow> {
  await db.query(
    `WITH w AS (
       INSERT INTO spindle.limits (kind, name, operator) VALUES ($1, $2, $3::jsonb)
       ON CONFLICT (kind, name) DO UPDATE SET operator = limits.operator || excluded.operator, updated_at = now()
       RETURNING 1
     )
     SELECT pg_notify('${LIMITS_CHANNEL}', '') FROM w`,
    [scope.kind, scope.name, JSON.stringify(update)],
  );
  return (await getLimits(db, scope))!;
}

/** Drops what an operator set on the scope: the module's limits (if any) apply again. False when it had none. */
export async function clearOperatorLimits(db: Queryable, scope: LimitScope): Promise<boolean> {
  const { rowCount } = await db.query(
    `WITH w AS (
       UPDATE spindle.limits SET operator = '{}', updated_at = now()
        WHERE kind = $1 AND name = $2 AND operator <> '{}' RETURNING 1
     )
     SELECT pg_notify('${LIMITS_CHANNEL}', '') FROM w`,
    [scope.kind, scope.name],
  );
  return (rowCount ?? 0) > 0;
}

/** Pauses or resumes a scope; returns whether it changed. Resuming wakes the supervisors. */
export async function setPaused(db: Queryable, scope: LimitScope, paused: boolean): Promise<boolean> {
  const { rows } = await db.query<{ changed: boolean }>(
    `WITH before AS (SELECT paused FROM spindle.limits WHERE kind = $1 AND name = $2),
     w AS (
       INSERT INTO spindle.limits (kind, name, paused) VALUES ($1, $2, $3)
       ON CONFLICT (kind, name) DO UPDATE SET paused = excluded.paused, updated_at = now()
        WHERE limits.paused <> excluded.paused
       RETURNING 1
     )
     SELECT EXISTS (SELECT 1 FROM w) AND coalesce((SELECT paused FROM before), false) <> $3 AS changed,
            (SELECT count(pg_notify('${LIMITS_CHANNEL}', '')) FROM w) AS told`,
    [scope.kind, scope.name, paused],
  );
  return rows[0]!.changed;
}

/** One scope's limits, what they hold now, and its jobs held back. */
export interface LimitRow {
  kind: 'type' | 'queue';
  name: string;
  paused: boolean;
  /** The limits in force: the module's, with the operator's over them. */
  limits: FlowLimits;
  module: FlowLimits;
  operator: FlowLimitsUpdate;
  /** Its jobs running now, across every supervisor. */
  running: number;
  /** Its jobs that could run now (run_at passed) but are queued. */
  waiting: number;
  /** Starts inside the rate window now, when it has a rate limit. */
  recentStarts: number | null;
}

const LIMIT_COLUMNS = `f.kind, f.name, f.paused, f.module, f.operator,
  jsonb_strip_nulls(f.module || f.operator) AS limits,
  (SELECT count(*)::int FROM spindle.jobs j WHERE j.state = 'running'
      AND CASE WHEN f.kind = 'type' THEN j.type = f.name ELSE j.queue = f.name END) AS running,
  (SELECT count(*)::int FROM spindle.jobs j WHERE j.state = 'queued' AND j.run_at <= now()
      AND CASE WHEN f.kind = 'type' THEN j.type = f.name ELSE j.queue = f.name END) AS waiting,
  CASE WHEN f.rate_limit IS NULL THEN NULL ELSE
    (SELECT count(*)::int FROM spindle.limit_starts s WHERE s.scope = f.kind || ':' || f.name AND s.key = ''
        AND s.at > clock_timestamp() - spindle.rate_window_ms(f.rate_interval_ms) * interval '1 millisecond') END AS "recentStarts"`;

/** Every scope with limits or a pause (or that had them), types first. */
export async function listLimits(db: Queryable): Promise<LimitRow[]> {
  const { rows } = await db.query<LimitRow>(
    `SELECT ${LIMIT_COLUMNS} FROM spindle.flow_limits f
      WHERE f.active OR f.module <> '{}' OR f.operator <> '{}'
      ORDER BY f.kind DESC, f.name`,
  );
  return rows;
}

export async function getLimits(db: Queryable, scope: LimitScope): Promise<LimitRow | undefined> {
  const { rows } = await db.query<LimitRow>(`SELECT ${LIMIT_COLUMNS} FROM spindle.flow_limits f WHERE f.kind = $1 AND f.name = $2`, [
    scope.kind,
    scope.name,
  ]);
  return rows[0];
}

/** Why each of these jobs is still queued, by flow control, when something holds it back: id -> words. */
export async function waitingFor(db: Queryable, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const { rows } = await db.query<{ id: string; why: string }>(
    `SELECT j.id::text AS id, spindle.waiting_for(j) AS why FROM spindle.jobs j
      WHERE j.id = ANY($1::bigint[]) AND j.state = 'queued'
        AND EXISTS (SELECT 1 FROM spindle.limits)`,
    [ids],
  );
  return new Map(rows.filter((r) => r.why !== null).map((r) => [r.id, r.why]));
}
