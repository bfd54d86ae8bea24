/**
 * A TCP proxy on loopback that delays every byte by a fixed time in each direction, so a database on
 * this machine answers as one a network hop away (a managed database in the same zone: about 1 ms a
 * round trip). There is no kernel netem here; this is our own, on node:net.
 *
 * Node's timers fire on whole milliseconds, too coarse for a 0.5 ms delay, so a clock thread
 * (bench/delay-clock.mjs) sleeps on Atomics.wait, which takes fractional milliseconds, and wakes this
 * thread with a message when the oldest held chunk is due. Every chunk is held for the same time,
 * so one FIFO queue for all connections and both directions keeps each stream's order.
 *
 * The hold is settable: the proxy's own passage (two more sockets, a wake-up of its thread) costs
 * time as well, so bench/network-hop.ts calibrates the hold to what a round trip should cost in all.
 *
 * It also counts round trips: a connection's client-to-server chunk that follows a server-to-client
 * one (or opens the connection) starts an exchange. The harness reads the counts around a run.
 */
import { createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { Worker } from 'node:worker_threads';

/** Counts since the proxy started; read twice and subtract. */
export interface ProxyCounts {
  /** Client-to-server turns: round trips, or more exactly the times a client spoke after the server did. */
  exchanges: number;
  connections: number;
  bytesUp: number;
  bytesDown: number;
}

/** A running proxy. */
export interface DelayProxy {
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  proxiedUrl(url: string): string;
  counts(): ProxyCounts;
  /** The time each chunk is held now, ms. */
  holdMs(): number;
  /** Holds chunks `ms` from now on (calibration sets it so the whole hop costs what was asked). */
  setHoldMs(ms: number): void;
  close(): Promise<void>;
}

interface Held {
  dueAt: number;
  to: Socket;
  chunk: Buffer;
}

const CLOCK = new URL('./delay-clock.mjs', import.meta.url);

/** Absolute milliseconds with sub-millisecond resolution, comparable with the clock thread's. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Starts a proxy to `target` that holds each chunk `delayMs` in each direction. */
export async function startDelayProxy(target: { host: string; port: number }, delayMs: number): Promise<DelayProxy> {
  const checkDelay = (ms: number) => {
    if (!(ms >= 0)) throw new Error(`delayMs must be 0 or more, got ${ms}`);
  };
  checkDelay(delayMs);
  // [0]: generation (bumped whenever the deadline changes); the deadline in a Float64 after it.
  const shared = new SharedArrayBuffer(16);
  const generation = new Int32Array(shared, 0, 1);
  const deadline = new Float64Array(shared, 8, 1);
  deadline[0] = Number.POSITIVE_INFINITY;
  const clock = new Worker(CLOCK, { workerData: { shared } });
  clock.unref();

  const queue: Held[] = [];
  let head = 0;
  const counts: ProxyCounts = { exchanges: 0, connections: 0, bytesUp: 0, bytesDown: 0 };
  const sockets = new Set<Socket>();

  const arm = () => {
    deadline[0] = head < queue.length ? queue[head]!.dueAt : Number.POSITIVE_INFINITY;
    Atomics.add(generation, 0, 1);
    Atomics.notify(generation, 0);
  };
  const flush = () => {
    const now = nowMs();
    while (head < queue.length && queue[head]!.dueAt <= now) {
      const held = queue[head]!;
      queue[head++] = undefined as unknown as Held;
      if (!held.to.destroyed) held.to.write(held.chunk);
    }
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    } else if (head > 4_096) {
      queue.splice(0, head);
      head = 0;
    }
    arm();
  };
  clock.on('message', flush);

  const hold = (to: Socket, chunk: Buffer) => {
    const wasEmpty = head === queue.length;
    queue.push({ dueAt: nowMs() + delayMs, to, chunk });
    if (wasEmpty) arm();
  };

  const server: Server = createServer({ noDelay: true }, (client) => {
    counts.connections += 1;
    const upstream = new Socket();
    upstream.setNoDelay(true);
    sockets.add(client).add(upstream);
    let serverSpokeLast = true;
    client.on('data', (chunk) => {
      if (serverSpokeLast) counts.exchanges += 1;
      serverSpokeLast = false;
      counts.bytesUp += chunk.length;
      hold(upstream, chunk);
    });
    upstream.on('data', (chunk) => {
      serverSpokeLast = true;
      counts.bytesDown += chunk.length;
      hold(client, chunk);
    });
    // An end or error on one side ends the other once what is held for it has gone out.
    const closeBoth = () => {
      for (const s of [client, upstream]) {
        sockets.delete(s);
        if (!s.destroyed) setTimeout(() => s.destroy(), Math.ceil(delayMs) + 1);
      }
    };
    client.on('close', closeBoth).on('error', closeBoth);
    upstream.on('close', closeBoth).on('error', closeBoth);
    upstream.connect(target.port, target.host);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    proxiedUrl(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    counts: () => ({ ...counts }),
    holdMs: () => delayMs,
    setHoldMs(ms) {
      checkDelay(ms);
      delayMs = ms;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await clock.terminate();
    },
  };
}
