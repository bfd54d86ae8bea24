/**
 * Which database a CLI command talks to: --database-url, DATABASE_URL, or the embedded one, which the
 * command joins as a user for its length (starting it when none runs; see src/db/embedded.ts).
 *
 * From openDatabase() on, SIGINT and SIGTERM belong to the command's database: the first one
 * releases what the command holds (the embedded server stops if the command was its last user) and
 * exits with 130 or 143; a second exits at once. Other SIGINT listeners (a message to the user) run
 * too, and must not exit themselves.
 */
import { SpindleError } from '../errors.ts';
import { migrate } from '../db/migrate.ts';

/** An open database for one command; close() releases the embedded server if the command holds it. */
export interface Database {
  url: string;
  /** Turns "the schema is missing" and "cannot connect" into advice. */
  schemaErrors<T>(run: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** What a command holds on its database. */
interface Held {
  url: string;
  release(): Promise<void>;
}

/** Exit codes of a process ended by a signal, as a shell reports them. */
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Finds the database: an explicit URL, DATABASE_URL, else the embedded server of the state dir
 * (`--state-dir`, SPINDLE_STATE_DIR, `./.spindle`), started for the command when none runs, and
 * migrated (spindle's own database) unless `migrate` is false.
 */
export async function openDatabase(options: {
  databaseUrl?: string;
  stateDir?: string;
  migrate?: boolean;
}): Promise<Database> {
  const opening = hold(options);
  const lifetime = releaseOnSignal(opening);
  let held: Held;
  try {
    held = await opening;
  } catch (error) {
    lifetime.dispose();
    throw error;
  }
  return { url: held.url, schemaErrors, close: lifetime.close };
}

async function hold(options: { databaseUrl?: string; stateDir?: string; migrate?: boolean }): Promise<Held> {
  const explicit = options.databaseUrl ?? (process.env.DATABASE_URL || undefined);
  if (explicit) return { url: explicit, release: async () => {} };

  const { resolveStateDir, startEmbedded } = await import('../db/embedded.ts');
  const server = await startEmbedded({ stateDir: resolveStateDir(options.stateDir) });
  try {
    if (options.migrate !== false) await migrate(server.url);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { url: server.url, release: () => server.stop() };
}

/**
 * Installs the SIGINT/SIGTERM handlers of a command's database (see the top of this file).
 * `close()` releases and removes them; after a signal it waits for the handler, which exits.
 */
function releaseOnSignal(opening: Promise<Held>): { close(): Promise<void>; dispose(): void } {
  let releasing: Promise<void> | undefined;
  let signalled = false;
  // Waits for a database still being opened, so a Ctrl-C during the start of the embedded server stops it too.
  const release = () => (releasing ??= opening.then((held) => held.release(), () => {}));
  const onSignal = (signal: NodeJS.Signals) => {
    const code = SIGNAL_EXIT_CODES[signal as keyof typeof SIGNAL_EXIT_CODES] ?? 1;
    if (signalled) process.exit(code);
    signalled = true;
    void release()
      .catch(() => {})
      .finally(() => process.exit(code));
  };
  const dispose = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    dispose,
    async close() {
      await release();
      // The signal handler exits as soon as the release is done: nothing after it may print or exit.
      if (signalled) await new Promise<never>(() => {});
      dispose();
    },
  };
}

async function schemaErrors<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '42P01' || code === '3F000' || code === '42883') {
      throw new SpindleError(
        'the spindle schema is missing or old in this database: run `spindle migrate`, or start a supervisor, which migrates',
      );
    }
    if (code === 'ECONNREFUSED') {
      throw new SpindleError(`cannot reach PostgreSQL: ${(error as Error).message}`);
    }
    throw error;
  }
}
