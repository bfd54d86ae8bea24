/** Which database a CLI command talks to: --database-url, DATABASE_URL, or the embedded one. */
import { migrate } from '../db/migrate.ts';
import { SpindleError } from '../errors.ts';

/** An open database for one command; close() stops an embedded server this command started. */
export interface Database {
  url: string;
  /** Turns "the schema is missing" into advice. */
  schemaErrors<T>(run: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Finds the database: an explicit URL, DATABASE_URL, the embedded server a running supervisor
 * started, or else starts the embedded server for the length of this command (and migrates it).
 */
export async function openDatabase(options: {
  databaseUrl?: string;
  stateDir?: string;
  migrate?: boolean;
}): Promise<Database> {
  const explicit = options.databaseUrl ?? process.env.DATABASE_URL;
  if (explicit) return { url: explicit, schemaErrors, close: async () => {} };

  const { connectionStringFor, defaultStateDir, startEmbedded } = await import('../db/embedded.ts');
  const stateDir = options.stateDir ?? defaultStateDir();
  const running = connectionStringFor(stateDir);
  if (running) return { url: running, schemaErrors, close: async () => {} };

  const server = await startEmbedded({ stateDir });
  try {
    if (options.migrate !== false) await migrate(server.url);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { url: server.url, schemaErrors, close: () => server.stop() };
}

async function schemaErrors<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '42P01' || code === '3F000' || code === '42883') {
      throw new SpindleError(`the spindle schema is missing or old in this database: run 'spindle migrate' first`);
    }
    if (code === 'ECONNREFUSED') {
      throw new SpindleError(`cannot reach PostgreSQL: ${(error as Error).message}`);
    }
    throw error;
  }
}
