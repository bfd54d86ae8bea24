/** What every statement runs on: a pool or a client, and a transaction on one connection. */
import type pg from 'pg';

/** A pool or a client: anything that runs a query. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

/**
 * Hears a checked-out client's 'error' until the returned function is called. A pool listens for it
 * only on idle clients: a connection that drops while checked out (a restarted server, a terminated
 * backend, a link cut) emits an 'error' nobody hears, which ends the process. The statement under way
 * fails with it anyway, so the event itself is ignored.
 */
export function hearDrops(client: pg.ClientBase): () => void {
  const ignore = () => {};
  client.on('error', ignore);
  return () => client.off('error', ignore);
}

/**
 * Ends a pool and waits, up to `boundMs`, for its connections to close. pg's `Pool.end()` resolves
 * once it has asked them to: a caller that then counts the database's sessions, or drops it, would
 * still find them. Bounded, as a connection whose peer is unreachable closes only when TCP gives up.
 */
export async function endPool(pool: pg.Pool, boundMs = 2_000): Promise<void> {
  let open = pool.totalCount;
  const closed = new Promise<void>((resolve) => {
    if (open === 0) resolve();
    pool.on('remove', () => {
      if (--open <= 0) resolve();
    });
  });
  await pool.end();
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, boundMs);
  });
  await Promise.race([closed, bound]);
  clearTimeout(timer);
}

/**
 * Runs `body` in a transaction on one connection of `pool`: COMMIT when it resolves, ROLLBACK when
 * it throws (the error is rethrown). A connection whose ROLLBACK failed is discarded.
 */
export async function inTransaction<T>(pool: pg.Pool, body: (db: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const stopHearing = hearDrops(client);
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await body(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((err: Error) => {
      broken = err;
    });
    throw error;
  } finally {
    stopHearing();
    client.release(broken);
  }
}
