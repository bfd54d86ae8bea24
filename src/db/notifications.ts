/** LISTEN and UNLISTEN on a session of its own. */
import type { Queryable } from './queryable.ts';

/** Ends every LISTEN of this connection (before it goes back to a pool). */
export async function unlistenAll(db: Queryable): Promise<void> {
  await db.query('UNLISTEN *');
}

/** Runs a notification channel subscription on a dedicated connection. */
export async function listen(db: Queryable, channels: readonly string[]): Promise<void> {
  for (const channel of channels) await db.query(`LISTEN ${channel}`);
}
