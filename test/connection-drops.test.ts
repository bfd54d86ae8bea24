/**
 * A connection that drops while spindle holds it checked out (a transaction, a supervisor's start)
 * fails what runs on it and nothing more: its 'error' event, which no pool listens for while the
 * client is out, must not end the process (vitest reports such an event as an unhandled error).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inTransaction } from '../src/db/queryable.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

let db: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  pool.on('error', () => {});
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

describe('a connection that drops while checked out', () => {
  it('fails the transaction on it with the error, and the pool goes on with a new connection', async () => {
    const failed = await inTransaction(pool, async (client) => {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // Ended from another connection, as an operator or a restarted server would; then waited on.
      await db.pool.query('SELECT pg_terminate_backend($1, 5000)', [rows[0]!.pid]);
      await client.query('SELECT pg_sleep(0.05)');
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(Error);
    // Give the connection's 'error' event its turn: unheard, it would be an uncaught exception here.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await pool.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});
