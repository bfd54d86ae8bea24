/**
 * One supervisor process for scenario 6b (scale out): started by
 * scenarios/scale-out.ts with `node --import tsx` (fork), one per process
 * measured. It runs startSupervisor() on the given database with the benchmark's
 * worker modules it is given and talks to its parent over IPC:
 *   -> { type: 'ready', id }       once the supervisor runs
 *   <- { type: 'stop' }            graceful stop
 *   -> { type: 'stopped', stats }  then it exits
 * If the parent goes away, it stops and exits too.
 *
 *   argv[2]: JSON ScaleChildSpec
 * (The parent imports only its types: importing this file runs it.)
 */
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';

/** What the parent passes. */
export interface ScaleChildSpec {
  databaseUrl: string;
  concurrency: number;
  /** Job type -> worker module path. */
  workers: Record<string, string>;
  /** Workflow name -> workflow module path (scenario 8). */
  workflows?: Record<string, string>;
}

/** Messages a scale child sends. */
export type ScaleChildMessage =
  | { type: 'ready'; id: string }
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
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'stop') void stop();
  });
  process.on('disconnect', () => void stop());
  try {
    handle = await startSupervisor({
      databaseUrl: spec.databaseUrl,
      workers: spec.workers,
      workflows: spec.workflows ?? {},
      concurrency: spec.concurrency,
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
