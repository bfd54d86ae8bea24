/**
 * The debug socket's file: the checks before it is bound (its path's length, a stale socket left by
 * a dead process, a live supervisor already serving it) and its directory.
 */
import { lstat, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { dirname, resolve } from 'node:path';
import { assertNever } from '../actors/kernel.ts';
import { SpindleError, ValidationError } from '../errors.ts';
import { mkdirp, runDir } from './serving.ts';

/** How long a check of an existing socket file waits for an answer to `ping`. */
const PROBE_TIMEOUT_MS = 1_000;
/** The longest Unix socket path the OS takes (sun_path minus its NUL). */
const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

/** The debug socket cannot be used: its path is taken, unusable or too long. */
export class DebugSocketError extends SpindleError {
  override name = 'DebugSocketError';
}

/**
 * Makes sure a debug socket can be bound at `path`: a socket file left by a dead process is
 * removed; a live process answering there, or a file that is not a socket, is an error.
 */
export async function ensureSocketFree(path: string): Promise<void> {
  checkSocketPath(path);
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!info.isSocket()) {
    throw new DebugSocketError(`${path} exists and is not a socket; remove it, or choose another --socket`);
  }
  const probe = await probeSocket(path);
  switch (probe.state) {
    case 'dead':
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      return;
    case 'live': {
      const who = probe.supervisorId ? `supervisor ${probe.supervisorId}${probe.pid ? ` (pid ${probe.pid})` : ''}` : 'another process';
      throw new DebugSocketError(
        `${who} is already serving the debug socket ${path}; give this supervisor another --socket, or --no-socket`,
      );
    }
    case 'silent':
      throw new DebugSocketError(
        `a process is listening on ${path} but does not answer ping; stop it, or choose another --socket`,
      );
    default:
      return assertNever(probe);
  }
}

/** Refuses a socket path that is empty or longer than the OS takes. */
export function checkSocketPath(path: string): void {
  if (typeof path !== 'string' || path === '') {
    throw new ValidationError('socket', `must be a path, got ${JSON.stringify(path)}`);
  }
  const bytes = Buffer.byteLength(resolve(path));
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new DebugSocketError(
      `the debug socket path ${resolve(path)} is ${bytes} bytes; the OS allows ${MAX_SOCKET_PATH_BYTES}: choose a shorter --socket`,
    );
  }
}

/**
 * Creates the socket's directory mode 0700. `<stateDir>/run` is ours and is made 0700 even if it
 * exists; a directory elsewhere that exists is left as it is (the socket itself is 0600).
 */
export async function prepareSocketDir(socketPath: string, stateDir: string): Promise<void> {
  const dir = dirname(socketPath);
  await mkdirp(dir, 0o700, { chmodExisting: dir === runDir(stateDir) });
}

type Probe = { state: 'dead' } | { state: 'silent' } | { state: 'live'; supervisorId?: string; pid?: number };

/** Connects to an existing socket file and asks `ping`. */
function probeSocket(path: string): Promise<Probe> {
  return new Promise((done, fail) => {
    const socket = createConnection({ path });
    let buffer = '';
    const finish = (probe: Probe | Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (probe instanceof Error) fail(probe);
      else done(probe);
    };
    const timer = setTimeout(() => finish({ state: 'silent' }), PROBE_TIMEOUT_MS);
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 'probe', op: 'ping' })}\n`));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const newline = buffer.indexOf('\n');
      if (newline < 0) return;
      try {
        const reply = JSON.parse(buffer.slice(0, newline)) as { result?: { supervisorId?: string; pid?: number } };
        finish({ state: 'live', supervisorId: reply.result?.supervisorId, pid: reply.result?.pid });
      } catch {
        finish({ state: 'live' });
      }
    });
    socket.on('end', () => finish({ state: 'silent' }));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') finish({ state: 'dead' });
      else finish(new DebugSocketError(`cannot check the existing debug socket ${path}: ${err.message}`));
    });
  });
}
