/**
 * One supervisor process for scenario 6b (scale out), and for the soak and
 * memory scenarios of issue 25: started by scenarios/scale-out.ts (and others) with `node --import tsx` (fork), one per process
 * measured. It runs startSupervisor() on the given database with the benchmark's
 * worker modules it is given and talks to its parent over IPC:
 *   -> { type: 'ready', id }       once the supervisor runs
 *   <- { type: 'stats' }           (issue 25: soak, memory) its RSS, heap, event-loop lag since the last
 *   -> { type: 'stats', ... }      stats and jobs in flight
 *   <- { type: 'stop' }            graceful stop
 *   -> { type: 'stopped', stats }  then it exits
 * If the parent goes away, it stops and exits too.
 *
 *   argv[2]: JSON ScaleChildSpec
 * (The parent imports only its types: importing this file runs it.)
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';

/** What the parent passes. */
export interface ScaleChildSpec {
  databaseUrl: string;
  concurrency: number;
  /** Job type -> worker module path. */
  workers: Record<string, string>;
  /** Workflow name -> workflow module path (scenario 8). */
  workflows?: Record<string, string>;
  /** Queues served (default: all). */
  queues?: string[];
}

/** A stats answer: memory now, event-loop lag since the last one (ms). */
export interface SupervisorStats {
  type: 'stats';
  rssBytes: number;
  heapUsedBytes: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  inFlight: number;
}

/** Messages a scale child sends. */
export type ScaleChildMessage =
  | { type: 'ready'; id: string }
  | SupervisorStats
  | { type: 'stopped'; inFlight: number }
  | { type: 'error'; error: string };

function send(message: ScaleChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, () => resolve());
  });
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ScaleChildSpec;
  let handle: SupervisorHandle | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      const inFlight = handle ? handle.supervisor.jobs().length : 0;
      await handle?.stop();
      await send({ type: 'stopped', inFlight });
      process.exit(0);
    })());
  // 1 ms sampling: the lag a job's dispatch or a claim's answer waits behind.
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  const ms = (ns: number) => ns / 1e6;
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'stop') void stop();
    if (message.type === 'stats') {
      const memory = process.memoryUsage();
      void send({
        type: 'stats',
        rssBytes: memory.rss,
        heapUsedBytes: memory.heapUsed,
        lagP50Ms: ms(lag.percentile(50)),
        lagP99Ms: ms(lag.percentile(99)),
        lagMaxMs: ms(lag.max),
        inFlight: handle ? handle.supervisor.jobs().length : 0,
      });
      lag.reset();
    }
  });
  process.on('disconnect', () => void stop());
  try {
    handle = await startSupervisor({
      databaseUrl: spec.databaseUrl,
      workers: spec.workers,
      workflows: spec.workflows ?? {},
      concurrency: spec.concurrency,
      ...(spec.queues ? { queues: spec.queues } : {}),
      logLevel: 'silent',
      socket: false,
    });
  } catch (error) {
    await send({ type: 'error', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  }
  await send({ type: 'ready', id: handle.id });
}

await main();
