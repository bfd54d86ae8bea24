/**
 * What scenario 7 (bench/scenarios/startup.ts) and its plain-JavaScript children
 * (spindle-child.mjs, peer-child.mjs, trace-preload.mjs) say to each other. The children are
 * JavaScript so that no process measured here loads tsx; these types describe their JSON.
 * Every time is epoch ms with sub-millisecond resolution (`performance.timeOrigin + performance.now()`).
 */

/** A pg connection: connect() called, then answered. */
export interface ConnectEvent {
  start: number;
  end?: number;
  /** Its application_name (spindle names every connection but the migration's). */
  app?: string;
  /** The connection sets `options` (spindle's claim pool, fastDb, does). */
  fast?: boolean;
  error?: string;
}

/** A pg query: sent, then answered. */
export interface QueryEvent {
  start: number;
  end?: number;
  app?: string;
  fast?: boolean;
  /** The first 120 characters of its SQL, whitespace collapsed. */
  sql: string;
  /** Its prepared-statement name, e.g. `spindle.claim`. */
  name?: string;
}

/** A socket connect: asked for, then made. */
export interface SocketEvent {
  start: number;
  connected?: number;
  /** The port or Unix socket path. */
  target: string;
}

/** A server's listen(): asked for, then listening. */
export interface ServerEvent {
  start: number;
  listening?: number;
  /** The port or Unix socket path. */
  target: string;
}

/** A node:fs/promises call: made, then settled. */
export interface FsEvent {
  start: number;
  end?: number;
  /** `mkdir`, `lstat`, ... */
  call: string;
  /** Its first argument. */
  path: string;
}

/** A worker thread of the process. */
export interface ThreadEvent {
  id: number;
  /** The process 'worker' event (the tick after `new Worker()`). */
  created: number;
  /** Its JavaScript started. */
  online?: number;
  exit?: number;
  /** Its first messages to the main thread: the probe's 'probing' / 'probed', a job thread's 'spindle:port'. */
  messages: { at: number; type: string }[];
}

/** What trace.mjs records. */
export interface Trace {
  connects: ConnectEvent[];
  /** end() called, then the connection closed. */
  closes: ConnectEvent[];
  queries: QueryEvent[];
  sockets: SocketEvent[];
  servers: ServerEvent[];
  fs: FsEvent[];
  threads: ThreadEvent[];
}

/** CPU spent from the start call to the first job written (trace.mjs cpuSpent). */
export interface CpuSpent {
  /** Every thread of the process (process.cpuUsage()). */
  processMs: number;
  /** The main thread alone, and the time it waited for a core while runnable (Linux only). */
  mainMs?: number;
  mainWaitMs?: number;
}

/** argv[2] of spindle-child.mjs. */
export interface SpindleChildSpec {
  /** Absolute path of dist/index.js. */
  entry: string;
  databaseUrl: string;
  /** The worker modules' directory. */
  workers: string;
  concurrency: number;
  /** The queued job to wait for. */
  jobId: string;
  traced: boolean;
}

/** What spindle-child.mjs answers. */
export type SpindleChildAnswer =
  | {
      ok: true;
      /** The child's performance.timeOrigin: when its process started. */
      processStart: number;
      /** Its first line of JavaScript. */
      mainAt: number;
      importStart: number;
      importEnd: number;
      /** Just before startSupervisor() was called. */
      callAt: number;
      /** startSupervisor() resolved. */
      returnedAt: number;
      /** The supervisor's job:claimed, job:started, job:finished events (absent when emitted before startSupervisor() returned). */
      claimedAt?: number;
      startedAt?: number;
      handledAt?: number;
      /** The job's `spindle_finished` NOTIFY arrived (its outcome is written). */
      notifiedAt: number;
      stopMs: number;
      /** From the call to the NOTIFY. */
      cpu: CpuSpent;
      trace?: Trace;
    }
  | { ok: false; error: string };

/** argv[2] of peer-child.mjs. */
export interface PeerChildSpec {
  system: 'graphile-worker' | 'pg-boss';
  /** Absolute path of the package's entry, resolved from bench/. */
  entry: string;
  databaseUrl: string;
  concurrency: number;
  /** graphile-worker's task identifier, pg-boss's queue. */
  task: string;
  /** pg-boss only. */
  schema?: string;
  loops?: number;
  batchSize?: number;
  pollingIntervalSeconds?: number;
}

/** What peer-child.mjs answers. */
export type PeerChildAnswer =
  | {
      ok: true;
      processStart: number;
      mainAt: number;
      importStart: number;
      importEnd: number;
      callAt: number;
      /** run() resolved (graphile-worker); start() and every work() resolved (pg-boss). */
      returnedAt: number;
      /** The first job's handler returned. */
      handledAt: number;
      /** The statement that records it done was answered. */
      writtenAt: number;
      /** From the call to the answer (read up to 1 ms later). */
      cpu: CpuSpent;
    }
  | { ok: false; error: string };

/** What trace-preload.mjs writes for a traced `spindle start`. */
export interface CliTrace {
  processStart: number;
  /** The preload's first line: node is up and about to load the CLI. */
  preloadAt: number;
  trace: Trace;
}

/**
 * What the worker module returns: times taken in the job thread that ran it (a thread's
 * performance.timeOrigin is the process's on Node 20, so these compare with the main thread's).
 */
export interface JobStamps {
  /** The module's top level ran (its import in that thread ended). */
  loadedAt: number;
  handlerStart: number;
  handlerEnd: number;
}
