/** Applies the numbered SQL files in migrations/, each in its own transaction, under an advisory lock. */
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';
import { appliedMigrations, appliedMigrationsUnlocked, ensureMigrationsTable, lockMigrations, recordMigration, unlockMigrations } from './migration-queries.ts';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** The migration files in the order they apply. */
export async function migrationNames(): Promise<string[]> {
  const files = await readdir(MIGRATIONS_DIR);
  return files.filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
}

/**
 * Brings the spindle schema up to date. Safe to run from many processes at once: the advisory lock
 * makes them take turns, and each sees what the ones before it applied. Returns the names applied.
 */
export async function migrate(connectionString: string): Promise<string[]> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    // Nothing to apply, as for every supervisor of a fleet after the first: no lock to queue for,
    // behind processes that may be starved of CPU while they hold it. A row is never deleted.
    const recorded = await appliedMigrationsUnlocked(client);
    if ((await migrationNames()).every((name) => recorded.has(name))) return [];
    await lockMigrations(client);
    try {
      await ensureMigrationsTable(client);
      const done = await appliedMigrations(client);
      const applied: string[] = [];
      for (const name of await migrationNames()) {
        if (done.has(name)) continue;
        const sql = await readFile(new URL(name, MIGRATIONS_DIR), 'utf8');
        await client.query('BEGIN');
        try {
          await client.query(sql);
          await recordMigration(client, name);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw new Error(`migration ${name} failed: ${(error as Error).message}`, { cause: error });
        }
        applied.push(name);
      }
      return applied;
    } finally {
      await unlockMigrations(client);
    }
  } finally {
    await client.end();
  }
}
