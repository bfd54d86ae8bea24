/**
 * A spindle supervisor in a process of its own (bench/scale-supervisor.ts), for the scenarios that
 * run several, or that read one's memory and event-loop lag apart from the process that enqueues.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { forkTsx } from './isolate.ts';
import type { ScaleChildMessage, ScaleChildSpec, SupervisorStats } from './scale-supervisor.ts';

const CHILD = fileURLToPath(new URL('./scale-supervisor.ts', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const STATS_TIMEOUT_MS = 10_000;

/** A started supervisor process. */
export interface SupervisorProcess {
  process: ChildProcess;
  id: string;
}

/** Starts a supervisor process; resolves once it runs. */
export function spawnSupervisor(spec: ScaleChildSpec): Promise<SupervisorProcess> {
  return new Promise((resolve, reject) => {
    const { child, tail } = forkTsx(CHILD, spec);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`a supervisor process was not ready within ${READY_TIMEOUT_MS} ms\n${tail()}`));
    }, READY_TIMEOUT_MS);
    child.on('message', (message: ScaleChildMessage) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve({ process: child, id: message.id });
      } else if (message.type === 'error') {
        clearTimeout(timer);
        reject(new Error(`a supervisor process failed to start: ${message.error}`));
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`a supervisor process exited (${signal ?? `code ${code}`}) before it was ready\n${tail()}`));
    });
  });
}

/** Its RSS, heap and event-loop lag since the last ask. */
export function askStats(child: SupervisorProcess): Promise<SupervisorStats> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.process.off('message', onMessage);
      reject(new Error(`a supervisor process did not answer 'stats' within ${STATS_TIMEOUT_MS} ms`));
    }, STATS_TIMEOUT_MS);
    const onMessage = (message: ScaleChildMessage) => {
      if (message.type !== 'stats') return;
      clearTimeout(timer);
      child.process.off('message', onMessage);
      resolve(message);
    };
    child.process.on('message', onMessage);
    child.process.send({ type: 'stats' });
  });
}

/** Asks a supervisor process to stop gracefully; kills it if it takes too long. Never rejects. */
export function stopSupervisor(child: SupervisorProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.process.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.process.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.process.connected) child.process.send({ type: 'stop' });
    else child.process.kill('SIGTERM');
  });
}
