/**
 * The thread of a Piscina task, as a job run alone (JobRun) and a batch (Batch) both see it: which
 * thread holds the task, terminating it, waiting for it to exit, and what its death means. The
 * two differ in what they guard and whom they settle; this is what they do alike.
 */
import type { Worker } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import { takenBy, type SerializedError } from './protocol.ts';

/** The lane a task runs in, as far as its thread goes. */
export interface TaskLane {
  readonly piscina: Piscina;
  /** The heap limit of its threads, if it has one. */
  readonly memoryLimitMb: number | undefined;
}

/**
 * The thread that has a task: the one its 'started' named, else the one its thread cell names
 * (see threadCell); 0 when none has taken it yet.
 */
export function threadHolding(threadId: number | undefined, cells: Int32Array | undefined): number {
  if (threadId !== undefined) return threadId;
  return cells === undefined ? 0 : takenBy(cells);
}

/**
 * Aborts the task `controller` was given to: Piscina rejects it at once and terminates the thread
 * that holds it, if any. Returns that thread: `worker` when it is known, else the one that left
 * the lane's threads.
 */
export function terminateTask(lane: TaskLane, controller: AbortController, worker: Worker | undefined): Worker | undefined {
  const before = lane.piscina.threads;
  controller.abort();
  if (worker !== undefined) return worker;
  const after = new Set(lane.piscina.threads);
  return before.find((thread) => !after.has(thread));
}

/** Resolves when `worker` has exited; true if that took longer than exitWaitMs (it may live on). */
export function afterExit(worker: Worker | undefined, exitWaitMs: number): Promise<boolean> {
  if (worker === undefined || worker.threadId === -1) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      worker.off('exit', onExit);
      resolve(true);
    }, exitWaitMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    worker.once('exit', onExit);
  });
}

/** The crash error if `err` (a task's rejection) says its thread died, else undefined. */
export function describeDeath(err: unknown, lane: TaskLane, worker: Worker | undefined): SerializedError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ERR_WORKER_OUT_OF_MEMORY') {
    const limit = lane.memoryLimitMb;
    const message =
      limit === undefined ? 'worker thread ran out of memory' : `worker thread ran out of memory (limit ${limit} MB)`;
    return { name: 'WorkerCrashError', message, phase: 'thread' };
  }
  const text = err instanceof Error ? err.message : String(err);
  const exited = /^worker exited with code: (-?\d+)/.exec(text);
  if (exited !== null) {
    return { name: 'WorkerCrashError', message: `worker thread exited with code ${exited[1]}`, phase: 'thread' };
  }
  if (text === 'Terminating worker thread') {
    return { name: 'WorkerCrashError', message: 'worker thread was terminated', phase: 'thread' };
  }
  // An uncaught error that killed the thread arrives as itself; the thread is gone from the pool.
  if (worker !== undefined && !lane.piscina.threads.includes(worker)) {
    const cause = toSerializedError(err, 'thread');
    return { ...cause, message: `worker thread died: ${cause.message}`, phase: 'thread' };
  }
  return undefined;
}

/** `error`, saying so when its thread had not exited within exitWaitMs (`late`). */
export function appendLate(error: SerializedError, late: boolean): SerializedError {
  if (!late) return error;
  return { ...error, message: `${error.message} (its thread had not exited after being terminated; a blocking native call?)` };
}

/** Something thrown on this side (by Piscina, or by a RunOptions callback), as a SerializedError. */
export function toSerializedError(err: unknown, phase: SerializedError['phase']): SerializedError {
  if (err instanceof Error) {
    const error: SerializedError = { name: err.name, message: err.message || err.name, phase };
    if (err.stack !== undefined) error.stack = err.stack;
    return error;
  }
  return { name: 'Error', message: String(err), phase };
}
