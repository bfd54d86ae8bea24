/** Each test file gets its own database, migrated, and drops it after. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { migrate } from '../../src/db/migrate.ts';

export interface TestDatabase {
  url: string;
  /** A pool on the test database, for assertions in SQL. */
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** The server every test file shares (DATABASE_URL, or the embedded one from the global setup). */
export function serverUrl(): string {
  return inject('databaseUrl');
}

/** Creates a fresh database on the shared server with nothing of spindle in it. */
export async function createBareDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = serverUrl();
  const name = `spindle_test_${randomBytes(5).toString('hex')}`;
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  return {
    url: withDatabase(admin, name),
    drop: () =>
      withClient(admin, async (c) => {
        await sessionsGone(c, name);
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }),
  };
}

/** Creates a fresh, migrated database on the shared server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const bare = await createBareDatabase();
  await migrate(bare.url);
  const pool = new pg.Pool({ connectionString: bare.url, max: 4 });
  pool.on('error', () => {});
  return {
    url: bare.url,
    pool,
    async drop() {
      await pool.end();
      await bare.drop();
    },
  };
}

/** The same server URL pointing at another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * Waits, up to five seconds, for the database's sessions to end. pg's `Pool.end()` resolves before
 * its connections have closed; FORCE would terminate those still closing, and a pool without an
 * 'error' listener turns that into an uncaught exception in the test file's process.
 */
async function sessionsGone(admin: pg.Client, name: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    if ((await sessionCount(admin, name)) === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** How many sessions the server has on database `name` (run from a session on another database). */
export async function sessionCount(admin: pg.ClientBase, name: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
  return rows[0]!.n;
}

async function withClient<T>(url: string, run: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}
