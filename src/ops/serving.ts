/**
 * What the ops servers (debug socket, HTTP API, metrics) share: binding and closing a listener,
 * their directories under the state dir, and their tokens. One place, so the servers agree on the
 * modes of `<stateDir>/run` and its secrets, and on how a token is compared.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, lstat, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import type { ListenOptions, Server } from 'node:net';
import { dirname, join } from 'node:path';

/** What a token file must hold to be kept: anything else may have been tampered with. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{32,256}$/;

// ---- listening --------------------------------------------------------------------

/** Listens on a host and port (0: any free port); resolves with the port bound, rejects with the listen error. */
export function listen(server: Server, options: ListenOptions & { port: number }): Promise<number>;
/** Listens on a Unix socket path; rejects with the listen error. */
export function listen(server: Server, options: ListenOptions & { path: string }): Promise<null>;
export function listen(server: Server, options: ListenOptions): Promise<number | null> {
  return new Promise((done, fail) => {
    const onError = (error: Error) => {
      server.off('listening', onListening);
      fail(error);
    };
    const onListening = () => {
      server.off('error', onError);
      const address = server.address();
      done(typeof address === 'object' && address !== null ? address.port : (options.port ?? null));
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options);
  });
}

/** Closes an HTTP server, and the connections it still has (keep-alive ones would hold it open). */
export async function closeServer(server: HttpServer): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((done) => server.close(() => done()));
}

/** Brackets an IPv6 address for a URL. */
export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * An ops actor's onStart: `open`, and if it throws, `close` what it opened, because the kernel runs
 * onStop only after an onStart that completed.
 */
export async function openOrRelease(open: () => Promise<void>, close: () => Promise<void>): Promise<void> {
  try {
    await open();
  } catch (error) {
    await close();
    throw error;
  }
}

// ---- directories and secrets ------------------------------------------------------

/** mkdir -p: every directory created gets `mode` whatever the umask; `chmodExisting` also sets it on `dir` if it existed. */
export async function mkdirp(dir: string, mode: number, options: { chmodExisting?: boolean } = {}): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode });
  if (first === undefined) {
    if (options.chmodExisting) await chmod(dir, mode);
    return;
  }
  for (let d = dir; ; d = dirname(d)) {
    await chmod(d, mode);
    if (d === first || dirname(d) === d) break;
  }
}

/** `<stateDir>/run`: the ops servers' secrets, and by default the debug socket. */
export function runDir(stateDir: string): string {
  return join(stateDir, 'run');
}

/** Creates `<stateDir>` (0755) and `<stateDir>/run` (0700, made so if it existed). */
export async function prepareRunDir(stateDir: string): Promise<void> {
  await mkdirp(stateDir, 0o755);
  await mkdirp(runDir(stateDir), 0o700, { chmodExisting: true });
}

/** Writes a file readable by its owner only, replacing it atomically. */
export async function writeSecret(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/**
 * A token read from `path` if a sound one is there (a regular file of ours, 0600, a token inside),
 * otherwise a new one written there: kept across restarts, so clients that read it keep working.
 */
export async function readOrCreateToken(stateDir: string, path: string): Promise<string> {
  await prepareRunDir(stateDir);
  try {
    const info = await lstat(path);
    const ours = typeof process.getuid !== 'function' || info.uid === process.getuid();
    if (info.isFile() && ours && (info.mode & 0o077) === 0) {
      const token = (await readFile(path, 'utf8')).trim();
      if (TOKEN_PATTERN.test(token)) return token;
    }
    // Anything else (readable by others, not a file, garbage) may have leaked: replace it.
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('base64url');
  await writeSecret(path, `${token}\n`);
  return token;
}

/**
 * A test of a given token against `token`. Both are hashed first, so the comparison takes the same
 * time whatever was given, its length included.
 */
export function tokenChecker(token: string): (given: unknown) => boolean {
  const expected = digest(token);
  return (given) => typeof given === 'string' && timingSafeEqual(digest(given), expected);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
