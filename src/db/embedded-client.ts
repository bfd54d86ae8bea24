/**
 * A connection pool on the embedded server of a state dir, for a Client given no URL. Each new
 * connection reads the server's URL again (embedded.json), so a pool follows the server through a
 * restart by another of its users, even onto another port; when no server runs, connecting fails
 * with what to do instead of ECONNREFUSED.
 */
import * as path from 'node:path';
import pg from 'pg';
import { SpindleError } from '../errors.ts';
import { connectionStringFor, STATE_FILE } from './embedded-state.ts';

/** No URL was given and no embedded server runs for the state dir. */
export function noDatabaseError(stateDir: string): SpindleError {
  return new SpindleError(
    `no database to connect to: pass options.connectionString, set DATABASE_URL, or run \`spindle start\` ` +
      `(it starts the embedded PostgreSQL and records its URL in ${path.join(stateDir, STATE_FILE)}); ` +
      `no embedded PostgreSQL is running for ${stateDir}`,
  );
}

/** A pool of at most `max` connections on the embedded server of `stateDir`; throws noDatabaseError when none runs. */
export function embeddedPool(stateDir: string, max: number): pg.Pool {
  const url = connectionStringFor(stateDir);
  if (url === undefined) throw noDatabaseError(stateDir);
  return new pg.Pool({ connectionString: url, max, Client: followingClient(stateDir) });
}

type ConnectCallback = ((err: Error) => void) | ((err: null, c: pg.Client) => void);

/** A pg.Client class whose instances connect to the server's URL of the moment they are made. */
function followingClient(stateDir: string): typeof pg.Client {
  return class EmbeddedClient extends pg.Client {
    readonly #found: boolean;

    constructor(config: pg.ClientConfig = {}) {
      const url = connectionStringFor(stateDir);
      super({ ...config, connectionString: url ?? config.connectionString });
      this.#found = url !== undefined;
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
      if (!this.#found) {
        const error = noDatabaseError(stateDir);
        if (!callback) return Promise.reject(error);
        process.nextTick(() => (callback as (err: Error) => void)(error));
        return;
      }
      return callback ? super.connect(callback) : super.connect();
    }
  };
}
