/**
 * Main side of the registry's probe: each worker module is imported on a thread of the pool, one
 * after the other (probe-task.ts), never in this thread. A module that exits, crashes or hangs its
 * thread at import is failed with the reason, that thread is replaced, and the rest are probed on
 * another. The thread that probed keeps the modules loaded for its jobs.
 */
import type { ModuleReport, ProbeTask, ProbingMessage } from './protocol.ts';

/** What the probe needs of the pool. */
export interface ProbeHost {
  /** Runs a task on a thread of the main lane; aborting `signal` terminates that thread. */
  runProbe(task: ProbeTask, signal?: AbortSignal): Promise<ModuleReport[]>;
  /** Sends the probe's 'spindle:probing' messages to `listener` until the returned function is called. */
  followProbe(probe: number, listener: (message: ProbingMessage) => void): () => void;
}

let lastProbe = 0;

/** A report per path; `timeoutMs` bounds each module's import. */
export async function probeModules(host: ProbeHost, paths: string[], timeoutMs: number): Promise<Map<string, ModuleReport>> {
  const reports = new Map<string, ModuleReport>();
  let remaining = paths;
  while (remaining.length > 0) {
    await probeOnce(host, remaining, timeoutMs, reports);
    remaining = remaining.filter((path) => !reports.has(path));
  }
  return reports;
}

async function probeOnce(host: ProbeHost, paths: string[], timeoutMs: number, reports: Map<string, ModuleReport>): Promise<void> {
  const probe = (lastProbe += 1);
  const controller = new AbortController();
  let current: string | undefined;
  let failure: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const fail = (reason: string): void => {
    failure ??= reason;
    controller.abort();
  };
  // Armed before the thread takes the task: the bound also covers a thread that is still starting.
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => fail(`importing it did not finish within ${timeoutMs} ms (a loop at its top level, or a top-level await that never settles)`), timeoutMs);
  };
  arm();
  const stop = host.followProbe(probe, (message) => {
    current = message.path;
    arm();
  });
  try {
    const results = await host.runProbe({ mode: 'probe', probe, paths }, controller.signal);
    paths.forEach((path, i) => reports.set(path, results[i]!));
  } catch (err) {
    failure ??= describeThreadEnd(err);
  } finally {
    clearTimeout(timer);
    stop();
  }
  if (failure === undefined) return;
  // The modules before `current` were imported; their reports went with the task's result, which
  // a dead thread never sends: probe them again. Only the one being imported is failed.
  if (current !== undefined) {
    reports.set(current, { ok: false, error: failure });
    return;
  }
  // The thread failed before importing anything: no module is to blame, and retrying would loop.
  for (const path of paths) reports.set(path, { ok: false, error: `the probe's thread failed: ${failure}` });
}

function describeThreadEnd(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = /worker exited with code: (-?\d+)/.exec(message)?.[1];
  if (code === '0') return 'its thread ended while importing it';
  if (code !== undefined) return `it ended its thread with exit code ${code}`;
  const name = err instanceof Error ? err.name : 'Error';
  return `it crashed its thread: ${name}: ${message}`;
}
