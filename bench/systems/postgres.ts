/** Small PostgreSQL helpers the adapters share: run a few statements on a short-lived connection. */
import pg from 'pg';

/** Runs `fn` with a fresh connection to `databaseUrl`, then closes it. */
export async function withConnection<T>(databaseUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Drops a schema and everything in it (a system's whole state). */
export async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  await withConnection(databaseUrl, async (client) => {
    // Notices about cascaded objects are noise here.
    await client.query(`SET client_min_messages = warning; DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
  });
}

/** The first column of the first row of `sql`, as a number. */
export async function queryNumber(db: Pick<pg.ClientBase, 'query'>, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.query<{ n: string | number }>(sql, params);
  return Number(rows[0]?.n ?? 0);
}
