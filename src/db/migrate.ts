/** Applies the numbered SQL files in migrations/, each in its own transaction, under an advisory lock. */
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';
import { appliedMigrations, appliedMigrationsUnlocked, ensureMigrationsTable, lockMigrations, recordMigration, unbounded, unlockMigrations } from './migration-queries.ts';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** The migration files in the order they apply. */
export async function migrationNames(): Promise<string[]> {
  const files = await readdir(MIGRATIONS_DIR);
  return files.filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
}

/**
 * Brings the spindle schema up to date. Safe to run from many processes at once: the advisory lock
 * makes them take turns, and each sees what the ones before it applied. Returns the names applied.
 * Given a URL it uses a connection of its own; given a connection (a pool's, say), it leaves it open,
 * its lock released.
 */
export async function migrate(target: string | pg.ClientBase): Promise<string[]> {
  if (typeof target !== 'string') return migrateOn(target);
  const client = new pg.Client({ connectionString: target });
  // A connection that drops fails the statement under way; its 'error' event must not end the process.
  client.on('error', () => {});
  await client.connect();
  try {
    return await migrateOn(client);
  } finally {
    await client.end();
  }
}

async function migrateOn(client: pg.ClientBase): Promise<string[]> {
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
      await client.query(unbounded('BEGIN'));
      try {
        await client.query(unbounded(sql));
        await recordMigration(client, name);
        await client.query(unbounded('COMMIT'));
      } catch (error) {
        await client.query(unbounded('ROLLBACK'));
        throw new Error(`migration ${name} failed: ${(error as Error).message}`, { cause: error });
      }
      applied.push(name);
    }
    return applied;
  } finally {
    await unlockMigrations(client);
  }
}
