/**
 * The debug socket and `spindle inspect`, against a real running supervisor: every op, what the
 * snapshot shows, permissions, the TCP token, and each way a client can misbehave, while jobs keep
 * completing.
 */
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DebugServer, type DebugServerState } from '../src/ops/debug-server.ts';
import { ensureSocketFree } from '../src/ops/debug-socket-file.ts';
import { createDebugSource } from '../src/ops/debug-source.ts';
import { Actor, assertNever } from '../src/actors/kernel.ts';
import type { ActorEvents, ActorSnapshot } from '../src/actors/snapshot.ts';
import type { SupervisorState } from '../src/actors/supervisor.ts';
import { createClient, type Client } from '../src/client.ts';
import type { Job } from '../src/job.ts';
import { startSupervisor, type RuntimeSnapshot, type SupervisorHandle } from '../src/start.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/debug-workers/', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));
const execFileP = promisify(execFile);

/** Short limits so the idle and slow-reader cases happen within a test. */
const LIMITS = { idleTimeoutMs: 1_500, maxBufferedBytes: 64 * 1024 };
const MAX_CLIENTS = 256;
const MAX_LINE_BYTES = 64 * 1024;

let db: TestDatabase;
let client: Client;
let tmp: string;
let stateDir: string;
let socketPath: string;
let handle: SupervisorHandle;

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url, maxConnections: 20 });
  tmp = await mkdtemp(join(tmpdir(), 'spindle-debug-'));
  stateDir = join(tmp, 'state');
  socketPath = join(stateDir, 'run', 'supervisor.sock');
  handle = await startSupervisor({
    databaseUrl: db.url,
    workers: FIXTURES,
    concurrency: 2,
    logLevel: 'silent',
    stateDir,
    socket: socketPath,
    debugPort: 0,
    pollMs: 200,
    debugLimits: LIMITS,
  });
});

afterAll(async () => {
  await handle?.stop();
  await client?.close();
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---- a line client ----------------------------------------------------------------

interface Line {
  id?: unknown;
  ok?: boolean;
  result?: unknown;
  error?: string;
  event?: string;
  data?: Record<string, unknown>;
}

/** One connection: sends raw text, reads NDJSON lines in order. */
class Conn {
  readonly socket: Socket;
  readonly closed: Promise<void>;
  #buffer = '';
  #lines: Line[] = [];
  #wake: (() => void) | null = null;
  #isClosed = false;
  #nextId = 1;

  static open(to: { path: string } | { port: number; host?: string }): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const socket = 'path' in to ? createConnection({ path: to.path }) : createConnection({ host: to.host ?? '127.0.0.1', port: to.port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new Conn(socket));
      });
    });
  }

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      for (let i = this.#buffer.indexOf('\n'); i >= 0; i = this.#buffer.indexOf('\n')) {
        this.#lines.push(JSON.parse(this.#buffer.slice(0, i)) as Line);
        this.#buffer = this.#buffer.slice(i + 1);
      }
      this.#wake?.();
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.#isClosed = true;
        this.#wake?.();
        resolve();
      }),
    );
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** The next line; rejects if none comes in time or the connection closed first. */
  async next(timeoutMs = 5_000): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (this.#isClosed) throw new Error('the connection closed');
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line within ${timeoutMs} ms`)), deadline - Date.now());
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.#lines.shift()!;
  }

  /** Skips lines until one matches. */
  async until(match: (line: Line) => boolean, timeoutMs = 10_000): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = await this.next(Math.max(1, deadline - Date.now()));
      if (match(line)) return line;
    }
  }

  /** Sends `{id, op, ...extra}` and resolves with the reply carrying that id. */
  request(op: string, extra: Record<string, unknown> = {}): Promise<Line> {
    const id = this.#nextId++;
    this.send(`${JSON.stringify({ id, op, ...extra })}\n`);
    return this.until((line) => line.id === id);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** One request on a fresh Unix connection. */
async function ask(op: string): Promise<Line> {
  const conn = await Conn.open({ path: socketPath });
  try {
    return await conn.request(op);
  } finally {
    conn.destroy();
  }
}

async function snapshot(): Promise<RuntimeSnapshot> {
  const reply = await ask('snapshot');
  expect(reply.ok).toBe(true);
  return reply.result as RuntimeSnapshot;
}

function findActor(root: ActorSnapshot, path: string): ActorSnapshot | undefined {
  if (root.path === path) return root;
  for (const child of root.children) {
    const found = findActor(child, path);
    if (found) return found;
  }
  return undefined;
}

async function debugState(): Promise<DebugServerState> {
  const actor = findActor((await snapshot()).actors, 'supervisor/debug-server');
  expect(actor?.status).toBe('running');
  return actor!.state as DebugServerState;
}

/** Runs `abuse` while batches of jobs are enqueued and waited for; every one of them must succeed. */
async function whileJobsRun<T>(abuse: () => Promise<T>): Promise<T> {
  let stop = false;
  let completed = 0;
  const traffic = (async () => {
    while (!stop) {
      const jobs = await client.enqueueMany(Array.from({ length: 10 }, (_, n) => ({ type: 'quick', input: { n } })));
      const done = await Promise.all(jobs.map((job) => client.waitFor(job.id, { timeoutMs: 15_000 })));
      expect(done.map((job) => job.state)).toEqual(Array(10).fill('succeeded'));
      completed += done.length;
    }
  })();
  try {
    return await abuse();
  } finally {
    stop = true;
    await traffic;
    expect(completed).toBeGreaterThanOrEqual(10);
    expect((await ask('ping')).ok).toBe(true);
  }
}

// ---- the tests --------------------------------------------------------------------

describe('the debug socket of a running supervisor', () => {
  it('answers ping, snapshot, jobs, pool and streams events after subscribe', async () => {
    const ping = await ask('ping');
    expect(ping).toEqual({ id: 1, ok: true, result: { pong: true, supervisorId: handle.id, pid: process.pid } });

    const snap = await snapshot();
    expect(snap).toMatchObject({ supervisorId: handle.id, pid: process.pid, versions: { node: process.version } });
    expect(snap.uptimeMs).toBeGreaterThan(0);
    expect(snap.actors).toMatchObject({ name: 'supervisor', path: 'supervisor', status: 'running' });
    expect(snap.actors.children.map((a) => a.name)).toEqual(
      expect.arrayContaining(['completer', 'progress', 'heartbeat', 'listener', 'elector', 'reaper', 'debug-server']),
    );
    for (const actor of snap.actors.children) {
      expect(Object.keys(actor)).toEqual(
        expect.arrayContaining(['name', 'status', 'mailbox', 'processed', 'restarts', 'lastError', 'state']),
      );
    }

    expect(await ask('jobs')).toMatchObject({ ok: true, result: [] });
    expect(await ask('pool')).toMatchObject({ ok: true, result: { maxThreads: 2, threads: expect.any(Number) } });

    const sub = await Conn.open({ path: socketPath });
    try {
      expect(await sub.request('subscribe')).toMatchObject({ ok: true, result: { subscribed: true } });
      const job = await client.enqueue('quick', { n: 1 });
      const isOurs = (name: string) => (line: Line) => line.event === name && line.data?.id === job.id;
      expect((await sub.until(isOurs('job:claimed'))).data).toMatchObject({ type: 'quick', attempt: 1 });
      expect((await sub.until(isOurs('job:started'))).data).toMatchObject({ threadId: expect.any(Number) });
      expect((await sub.until(isOurs('job:progress'))).data).toMatchObject({ percent: 100 });
      expect((await sub.until(isOurs('job:finished'))).data).toMatchObject({ outcome: 'succeeded', state: 'succeeded' });
      // A subscribed connection still answers requests.
      expect(await sub.request('ping')).toMatchObject({ ok: true });
    } finally {
      sub.destroy();
    }
  });

  it('lives in a 0700 directory (inside a traversable 0755 state dir), as a 0600 socket', async () => {
    expect((await stat(stateDir)).mode & 0o777).toBe(0o755);
    expect((await stat(join(stateDir, 'run'))).mode & 0o777).toBe(0o700);
    const socket = await lstat(socketPath);
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o777).toBe(0o600);
    const token = await stat(join(stateDir, 'run', 'debug.token'));
    expect(token.mode & 0o777).toBe(0o600);
  });

  it('shows a job in flight, with its thread and progress, in snapshot and jobs', async () => {
    const sub = await Conn.open({ path: socketPath });
    try {
      await sub.request('subscribe');
      const job = await client.enqueue('hold', { ms: 20_000 });
      await sub.until((line) => line.event === 'job:progress' && line.data?.id === job.id);

      const expected = {
        id: job.id,
        type: 'hold',
        attempt: 1,
        threadId: expect.any(Number),
        progress: 50,
        message: 'holding',
        startedAt: expect.any(String),
        elapsedMs: expect.any(Number),
      };
      const snap = await snapshot();
      expect(snap.jobs).toEqual([expect.objectContaining(expected)]);
      expect(findActor(snap.actors, 'supervisor')?.state).toMatchObject({ inFlight: 1 });
      expect(snap.pool.busy).toBe(1);
      expect((await ask('jobs')).result).toEqual([expect.objectContaining(expected)]);

      await client.cancel(job.id, 'seen it');
      expect((await client.waitFor(job.id, { timeoutMs: 10_000 })).state).toBe('cancelled');
      await sub.until((line) => line.event === 'job:finished' && line.data?.id === job.id);
      expect((await ask('jobs')).result).toEqual([]);
    } finally {
      sub.destroy();
    }
  });

  it('TCP: binds 127.0.0.1 only and refuses every request without the token from the 0600 file', async () => {
    const { tcp } = await debugState();
    expect(tcp).toMatchObject({ host: '127.0.0.1', port: expect.any(Number), tokenFile: join(stateDir, 'run', 'debug.token') });
    const port = tcp!.port;
    const token = (await readFile(join(stateDir, 'run', 'debug.token'), 'utf8')).trim();
    expect(token).toMatch(/^[0-9a-f]{48}$/);

    for (const extra of [{}, { token: 'f'.repeat(48) }, { token: 42 }]) {
      const conn = await Conn.open({ port });
      expect(await conn.request('snapshot', extra)).toMatchObject({ ok: false, error: expect.stringContaining('token') });
      await conn.closed;
    }

    const conn = await Conn.open({ port });
    try {
      expect(await conn.request('ping', { token })).toMatchObject({ ok: true, result: { supervisorId: handle.id } });
      expect(await conn.request('snapshot', { token })).toMatchObject({ ok: true, result: { supervisorId: handle.id } });
    } finally {
      conn.destroy();
    }

    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal);
    if (external) {
      await expect(Conn.open({ host: external.address, port })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    }
  });

  describe('robustness, while jobs keep completing', () => {
    it('answers bad JSON, unknown ops and malformed requests with errors, and keeps the connection', async () => {
      await whileJobsRun(async () => {
        const conn = await Conn.open({ path: socketPath });
        try {
          conn.send('this is not json\n');
          expect(await conn.next()).toMatchObject({ id: null, ok: false, error: expect.stringMatching(/^bad JSON/) });
          conn.send('{"id":7,"op":"nope"}\n');
          expect(await conn.next()).toMatchObject({ id: 7, ok: false, error: expect.stringContaining('unknown op "nope"') });
          conn.send('[1,2,3]\n');
          expect(await conn.next()).toMatchObject({ id: null, ok: false, error: expect.stringContaining('JSON object') });
          conn.send('{"id":"x"}\n');
          expect(await conn.next()).toMatchObject({ id: 'x', ok: false, error: expect.stringContaining('missing "op"') });
          conn.send('{"id":9,"op":"__proto__"}\n{"id":10,"op":"toString"}\n');
          expect(await conn.next()).toMatchObject({ id: 9, ok: false });
          expect(await conn.next()).toMatchObject({ id: 10, ok: false });
          expect(await conn.request('ping')).toMatchObject({ ok: true, result: { pong: true } });
        } finally {
          conn.destroy();
        }
      });
    });

    it('closes a connection whose line exceeds 64 KiB, after saying why', async () => {
      await whileJobsRun(async () => {
        for (const text of ['x'.repeat(MAX_LINE_BYTES + 10), `{"id":1,"op":"ping","pad":"${'y'.repeat(MAX_LINE_BYTES)}"}\n`]) {
          const conn = await Conn.open({ path: socketPath });
          conn.send(text);
          expect(await conn.next()).toMatchObject({ ok: false, error: expect.stringContaining(`longer than ${MAX_LINE_BYTES} bytes`) });
          await conn.closed;
        }
      });
    });

    it('closes a client that connects and sends nothing', async () => {
      await whileJobsRun(async () => {
        const conn = await Conn.open({ path: socketPath });
        const line = await conn.next(LIMITS.idleTimeoutMs + 5_000);
        expect(line).toMatchObject({ ok: false, error: expect.stringContaining(`no request for ${LIMITS.idleTimeoutMs} ms`) });
        await conn.closed;
      });
    });

    it('serves at most 256 clients at once and tells the rest', async () => {
      await whileJobsRun(async () => {
        const before = (await debugState()).rejected;
        const conns = await Promise.all(Array.from({ length: 500 }, () => Conn.open({ path: socketPath })));
        let refused: number;
        try {
          for (const conn of conns) conn.send('{"id":1,"op":"ping"}\n');
          const first = await Promise.all(conns.map((conn) => conn.next(10_000)));
          const served = first.filter((line) => line.ok === true).length;
          refused = first.filter((line) => line.ok === false && /too many clients/.test(line.error ?? '')).length;
          expect(served + refused).toBe(500);
          expect(served).toBeLessThanOrEqual(MAX_CLIENTS);
          expect(served).toBeGreaterThan(MAX_CLIENTS - 10);
          expect(refused).toBeGreaterThanOrEqual(500 - MAX_CLIENTS);
          // While they are all connected, one more is refused too.
          const extra = await Conn.open({ path: socketPath });
          expect(await extra.next()).toMatchObject({ id: null, ok: false, error: expect.stringContaining('too many clients') });
          await extra.closed;
          refused++;
        } finally {
          for (const conn of conns) conn.destroy();
        }
        await Promise.all(conns.map((conn) => conn.closed));
        expect((await debugState()).rejected - before).toBe(refused);
      });
    });

    it('drops events for a subscriber that does not read, never buffering more than the bound, and says so', async () => {
      await whileJobsRun(async () => {
        const before = (await debugState()).droppedEvents;
        const slow = await Conn.open({ path: socketPath });
        const watcher = await Conn.open({ path: socketPath });
        try {
          await slow.request('subscribe');
          await watcher.request('subscribe');
          slow.socket.pause();
          let dropped = 0;
          for (let round = 0; round < 40 && dropped === 0; round++) {
            const jobs = await client.enqueueMany(
              Array.from({ length: 50 }, (_, n) => ({ type: 'quick', input: { n, pad: 1_000 } })),
            );
            const waiting = new Set(jobs.map((job) => job.id));
            while (waiting.size > 0) {
              const line = await watcher.until((l) => l.event === 'job:finished' && waiting.has(l.data?.id as string));
              waiting.delete(line.data!.id as string);
            }
            dropped = (await debugState()).droppedEvents - before;
          }
          expect(dropped).toBeGreaterThan(0);
          // One line may go over the bound, never more.
          expect((await debugState()).maxBufferedBytes).toBeLessThanOrEqual(LIMITS.maxBufferedBytes + 8 * 1024);

          slow.socket.resume();
          const notice = await slow.until((line) => line.event === 'dropped', 20_000);
          expect(notice.data?.count).toBeGreaterThan(0);
          // Traffic goes on meanwhile, so more may have been dropped since `dropped` was read.
          expect(notice.data?.count).toBeLessThanOrEqual((await debugState()).droppedEvents - before);
          expect(await slow.request('ping')).toMatchObject({ ok: true });
        } finally {
          slow.destroy();
          watcher.destroy();
        }
      });
    });
  });

  it('a debug server whose socket file is removed crashes, is restarted by the supervisor, and shows it', async () => {
    await whileJobsRun(async () => {
      const sub = await Conn.open({ path: socketPath });
      await sub.request('subscribe');
      const restarted = new Promise<ActorEvents['actor:restart'][0]>((resolve) => {
        const on = (event: ActorEvents['actor:restart'][0]) => {
          if (event.path !== 'supervisor/debug-server') return;
          handle.supervisor.off('actor:restart', on);
          resolve(event);
        };
        handle.supervisor.on('actor:restart', on);
      });

      await unlink(socketPath);
      const crash = await sub.until((line) => line.event === 'actor:crash' && line.data?.path === 'supervisor/debug-server');
      expect(crash.data).toMatchObject({ action: 'restart', error: { message: expect.stringContaining('was removed') } });
      await sub.closed; // the crashed run's connections end with it
      expect(await restarted).toMatchObject({ restarts: 1 });

      const socket = await lstat(socketPath);
      expect(socket.isSocket()).toBe(true);
      expect(socket.mode & 0o777).toBe(0o600);
      const actor = findActor((await snapshot()).actors, 'supervisor/debug-server');
      expect(actor).toMatchObject({
        status: 'running',
        restarts: 1,
        lastError: { message: expect.stringContaining('was removed'), at: expect.any(String) },
      });
      expect(findActor((await snapshot()).actors, 'supervisor')).toMatchObject({ status: 'running', restarts: 0 });
    });
  });

  it('refuses to start a second supervisor on a socket that a live one serves', async () => {
    await expect(
      startSupervisor({ databaseUrl: db.url, workers: FIXTURES, concurrency: 1, logLevel: 'silent', stateDir, socket: socketPath }),
    ).rejects.toThrow(/already serving the debug socket/);
    expect((await ask('ping')).ok).toBe(true);

    const file = join(tmp, 'not-a-socket');
    await writeFile(file, 'hello');
    await expect(ensureSocketFree(file)).rejects.toThrow(/is not a socket/);
  });
});

// ---- a standalone actor tree ------------------------------------------------------

type FlakyMsg = { type: 'boom' } | { type: 'noop' };

/** Throws on 'boom': the supervisor's own children catch their errors, so a real crash needs an actor that does not. */
class Flaky extends Actor<FlakyMsg> {
  constructor() {
    super({ name: 'flaky' });
  }
  protected handle(msg: FlakyMsg): void {
    switch (msg.type) {
      case 'boom':
        throw new Error('flaky went boom');
      case 'noop':
        return;
      default:
        return assertNever(msg);
    }
  }
}

class Tree extends Actor<{ type: 'noop' }> {
  flaky!: Flaky;
  constructor() {
    super({ name: 'tree' });
  }
  protected override onStart(): void {
    this.flaky = this.spawn(new Flaky(), { policy: 'restart', backoffMs: 10 });
  }
  protected handle(): void {}
}

/** Leaves a socket file behind with nothing listening, as a killed process does. */
async function staleSocket(path: string): Promise<void> {
  const script = `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
  await execFileP(process.execPath, ['-e', script]).catch(() => {});
  expect((await lstat(path)).isSocket()).toBe(true);
}

describe('the debug server over an actor tree of its own', () => {
  it('takes over a stale socket, streams a crash and a restart, and shows them in the snapshot', async () => {
    const dir = join(tmp, 'tree');
    await mkdir(dir, { mode: 0o700 });
    const path = join(dir, 'debug.sock');
    await staleSocket(path);

    const tree = new Tree();
    await tree.start();
    const server = new DebugServer({
      source: createDebugSource({ id: 'tree', snapshot: () => tree.snapshot(), jobs: () => [], pool: () => null, root: tree }),
      socketPath: path,
      tcpPort: null,
      stateDir: join(tmp, 'tree-state'),
    });
    await server.start();
    const sub = await Conn.open({ path });
    try {
      expect(await sub.request('ping')).toMatchObject({ ok: true, result: { supervisorId: 'tree' } });
      await sub.request('subscribe');
      tree.flaky.send({ type: 'boom' });
      const crash = await sub.until((line) => line.event === 'actor:crash');
      expect(crash.data).toMatchObject({ path: 'tree/flaky', action: 'restart', error: { name: 'Error', message: 'flaky went boom' } });
      const restart = await sub.until((line) => line.event === 'actor:restart');
      expect(restart.data).toMatchObject({ path: 'tree/flaky', restarts: 1 });

      const snap = (await sub.request('snapshot')).result as ActorSnapshot;
      expect(findActor(snap, 'tree/flaky')).toMatchObject({
        status: 'running',
        restarts: 1,
        lastError: { message: 'flaky went boom' },
      });
    } finally {
      sub.destroy();
      await server.stop();
      await tree.stop();
    }
    await expect(lstat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

// ---- spindle inspect --------------------------------------------------------------

describe('spindle inspect', () => {
  it('prints the snapshot as JSON, as tables, and a clear error with exit 1 when nothing listens', async () => {
    const nowhere = join(tmp, 'nobody-here.sock');
    const [json, text, missing] = await Promise.all([
      execFileP(process.execPath, [BIN, 'inspect', '--json', '--socket', socketPath]),
      execFileP(process.execPath, [BIN, 'inspect', '--socket', socketPath]),
      execFileP(process.execPath, [BIN, 'inspect', '--socket', nowhere]).then(
        () => null,
        (error: { code: number; stderr: string }) => error,
      ),
    ]);

    const snap = JSON.parse(json.stdout) as RuntimeSnapshot;
    expect(snap).toMatchObject({ supervisorId: handle.id, actors: { path: 'supervisor' }, pool: { maxThreads: 2 } });

    expect(text.stdout).toContain(`supervisor ${handle.id}`);
    for (const heading of ['ACTORS', 'IN FLIGHT', 'POOL', 'supervisor/debug-server', 'supervisor/heartbeat', 'UTILISATION']) {
      expect(text.stdout).toContain(heading);
    }

    expect(missing).not.toBeNull();
    expect(missing!.code).toBe(1);
    expect(missing!.stderr).toContain(`no supervisor is running at ${nowhere}`);
  });
});

describe('flow control in the snapshot and in spindle inspect', () => {
  const scopesOf = async () => ((await snapshot()).actors.state as SupervisorState).limitedScopes;

  it('shows the scopes this supervisor knows as limited or paused, and what its last claim in each found', async () => {
    await client.setLimits('quick', { rateLimit: { limit: 1, intervalMs: 60_000 } });
    await client.pause('queue:parked');
    let jobs: Job[] = [];
    try {
      // Told by NOTIFY, the supervisor reads the scopes again.
      await expect.poll(async () => (await scopesOf()).map((v) => [v.scope, v.paused])).toEqual([
        ['type:quick', false],
        ['queue:parked', true],
      ]);
      jobs = await client.enqueueMany([{ type: 'quick', input: { n: 1 } }, { type: 'quick', input: { n: 2 } }]);
      // The first claim takes one job (the window allows one start); the one after finds the window full.
      await expect.poll(async () => (await scopesOf())[0]?.lastClaim?.retryMs ?? null, { timeout: 10_000 }).not.toBeNull();
      const [quick, parked] = await scopesOf();
      expect(quick!.lastClaim).toMatchObject({ took: 0, asked: expect.any(Number) });
      expect(quick!.lastClaim!.asked).toBeGreaterThan(0);
      expect(quick!.lastClaim!.retryMs).toBeGreaterThan(50_000);
      expect(parked).toMatchObject({ scope: 'queue:parked', paused: true });
      const states = await Promise.all(jobs.map(async (j) => (await client.get(j.id))!.state));
      expect(states.sort()).toEqual(['queued', 'succeeded']);

      const text = (await execFileP(process.execPath, [BIN, 'inspect', '--socket', socketPath])).stdout;
      expect(text).toContain('FLOW CONTROL (2)');
      const line = (scope: string) => text.split('\n').find((l) => l.startsWith(`${scope} `)) ?? '';
      expect(line('type:quick')).toMatch(/limited +\S+ ago +took 0 of \d+; held back by its rate limit, next start in (\d+(\.\d)?s|\dm\d\ds)$/);
      expect(line('queue:parked')).toMatch(/paused .*paused: no claims$/);
    } finally {
      await client.clearLimits('quick');
      await client.resume('queue:parked');
    }
    // Lifted: the job the window held back runs, and the scopes leave the snapshot.
    await Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs: 15_000 })));
    await expect.poll(scopesOf).toEqual([]);
    expect((await execFileP(process.execPath, [BIN, 'inspect', '--socket', socketPath])).stdout).not.toContain('FLOW CONTROL');
  });
});
