/**
 * A PgBouncer of our own in front of a PostgreSQL, as the embedded server is started: a free port, a
 * temporary directory with its ini and userlist, stopped (and the directory removed) after, even when
 * the caller fails or is interrupted. For test/fleet.test.ts and bench/fleet.ts.
 *
 * Clients connect with the server URL's user and no password (auth_type trust, on 127.0.0.1 only);
 * PgBouncer logs in to the server with the URL's own user and password.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where Debian's package puts it; PGBOUNCER (a path) wins, else the PATH. */
const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

/** The pgbouncer binary, or null when it is not installed. */
export function findPgBouncer(): string | null {
  if (process.env.PGBOUNCER) return existsSync(process.env.PGBOUNCER) ? process.env.PGBOUNCER : null;
  for (const path of CANDIDATES) if (existsSync(path)) return path;
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

export interface PgBouncerOptions {
  /** The PostgreSQL it pools (any database of it: every database is served). */
  serverUrl: string;
  /** Server connections per database and user (default_pool_size): the bound of what it opens. */
  poolSize: number;
  /** Client connections it accepts in all. */
  maxClients?: number;
  poolMode?: 'transaction' | 'session';
}

/** A running PgBouncer. */
export interface PgBouncer {
  port: number;
  /** The pooler's URL for a database of the server. */
  url(database: string): string;
  /** What it logged (stderr), for a failure's message. */
  log(): string;
  /** Stops it and removes its directory; idempotent. */
  stop(): Promise<void>;
}

/**
 * PgBouncer runs under a small shell that stops it when its stdin ends: when this process exits,
 * however it exits (SIGKILL included), its end of the pipe closes and the pooler goes with it.
 */
const WATCHDOG = '"$0" "$@" & pooler=$!; read -r _; kill $pooler 2>/dev/null; wait $pooler';

/** Starts PgBouncer; rejects with its log when it does not come up. */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const binary = findPgBouncer();
  if (!binary) throw new Error('pgbouncer is not installed (apt-get install pgbouncer, or PGBOUNCER=/path/to/pgbouncer)');
  const server = new URL(options.serverUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  const dir = await mkdtemp(join(tmpdir(), 'spindle-pgbouncer-'));
  // PgBouncer refuses to run as root: it then runs as `postgres`, which must read its files.
  const asRoot = process.getuid?.() === 0;
  try {
    const port = await freePort();
    const serverParams = [
      `host=${server.hostname || '127.0.0.1'}`,
      `port=${server.port || '5432'}`,
      `user=${user}`,
      ...(server.password ? [`password=${decodeURIComponent(server.password)}`] : []),
    ].join(' ');
    const ini = join(dir, 'pgbouncer.ini');
    const userlist = join(dir, 'userlist.txt');
    await writeFile(
      ini,
      [
        '[databases]',
        `* = ${serverParams}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = trust',
        `auth_file = ${userlist}`,
        `pool_mode = ${options.poolMode ?? 'transaction'}`,
        `default_pool_size = ${options.poolSize}`,
        'min_pool_size = 0',
        'reserve_pool_size = 0',
        `max_client_conn = ${options.maxClients ?? 1_000}`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    await writeFile(userlist, `"${user.replace(/"/g, '""')}" ""\n`, { mode: 0o600 });
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      await chmod(dir, 0o755);
      for (const file of [ini, userlist]) await chown(file, uid, gid);
    }
    const child = spawn('sh', ['-c', WATCHDOG, binary, ...(asRoot ? ['-u', 'postgres'] : []), ini], { stdio: ['pipe', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log = (log + chunk).slice(-64_000);
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await waitForPort(port, exited, () => log);
    } catch (error) {
      child.stdin!.end();
      await exited;
      throw error;
    }
    let stopping: Promise<void> | undefined;
    return {
      port,
      url: (database) => `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
      log: () => log,
      stop: () =>
        (stopping ??= (async () => {
          if (child.exitCode === null && child.signalCode === null) {
            child.stdin!.end();
            await exited;
          }
          await rm(dir, { recursive: true, force: true });
        })()),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** A port free now on 127.0.0.1 (the kernel's choice). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** Resolves once the port accepts a connection; rejects with the log if the process exits first or 10 s pass. */
async function waitForPort(port: number, exited: Promise<void>, log: () => string): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`pgbouncer exited at start:\n${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`pgbouncer did not listen on port ${port} within 10 s:\n${log()}`);
}
