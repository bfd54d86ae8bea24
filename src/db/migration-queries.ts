/** The statements of migrate(): its lock and its record of applied migrations. */
import type pg from 'pg';
import type { Queryable } from './queryable.ts';

/**
 * A migration's statements take as long as they need (an index built on a large table, the lock
 * another process holds while it migrates); the supervisor's pools bound their statements' time
 * (query_timeout), so each of these carries a bound of its own that no migration reaches.
 */
const NO_CLIENT_BOUND_MS = 2 ** 31 - 1;

/** A statement of a migration, with no bound on its time. */
export function unbounded(text: string, values?: unknown[]): pg.QueryConfig {
  return { text, values, query_timeout: NO_CLIENT_BOUND_MS } as pg.QueryConfig;
}

/** Key of the advisory lock held while migrating. */
const MIGRATION_LOCK = "hashtext('spindle.migrate')";

export async function lockMigrations(db: Queryable): Promise<void> {
  await db.query(unbounded(`SELECT pg_advisory_lock(${MIGRATION_LOCK})`));
}

export async function unlockMigrations(db: Queryable): Promise<void> {
  await db.query(unbounded(`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`));
}

export async function ensureMigrationsTable(db: Queryable): Promise<void> {
  await db.query(
    unbounded(`
    CREATE SCHEMA IF NOT EXISTS spindle;
    CREATE TABLE IF NOT EXISTS spindle.migrations (
      name       text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`),
  );
}

/** The migrations applied, read without the lock; none when the table does not exist yet. */
export async function appliedMigrationsUnlocked(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ present: boolean }>(`SELECT to_regclass('spindle.migrations') IS NOT NULL AS present`);
  return rows[0]!.present ? appliedMigrations(db) : new Set();
}

export async function appliedMigrations(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM spindle.migrations');
  return new Set(rows.map((r) => r.name));
}

export async function recordMigration(db: Queryable, name: string): Promise<void> {
  await db.query('INSERT INTO spindle.migrations (name) VALUES ($1)', [name]);
}
