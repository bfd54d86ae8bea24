/** A command's Client on its database. */
import { createClient, type Client } from '../client.ts';
import { openDatabase, type Database } from './database.ts';

/** Runs `use` with a Client on the command's database, and closes both. */
export async function withClient<T>(
  values: { 'database-url'?: string; 'state-dir'?: string },
  use: (client: Client, db: Database) => Promise<T>,
): Promise<T> {
  const db = await openDatabase({ databaseUrl: values['database-url'], stateDir: values['state-dir'] });
  // Two connections: a wait holds one to LISTEN while the other reads.
  const client = createClient({ connectionString: db.url, maxConnections: 2 });
  try {
    return await db.schemaErrors(() => use(client, db));
  } finally {
    await client.close();
    await db.close();
  }
}
