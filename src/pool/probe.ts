/**
 * Thread side of the registry: imports each worker module named in workerData,
 * one after the other, and posts what it exports, without running a handler.
 * User code is imported here and never in the main thread; if a module ends
 * or hangs this thread, the registry starts a new probe for the rest.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ModuleReport, ProbeMessage, ProbeRequest } from './protocol.ts';
import { loadWorkerModule, serializeThrown } from './thread.ts';

function post(message: ProbeMessage): void {
  parentPort?.postMessage(message);
}

async function probe(path: string): Promise<ModuleReport> {
  const loaded = await loadWorkerModule(path);
  if (!loaded.ok) return { ok: false, error: loaded.reason };
  const { module } = loaded;
  const report: ModuleReport = {
    ok: true,
    options: module.options,
    hasDefault: true,
    hasCompensate: module.compensate !== undefined,
  };
  if (module.schedule !== undefined) report.schedule = module.schedule;
  for (const [name, value] of [['options', module.options], ['schedule', module.schedule]] as const) {
    try {
      structuredClone(value);
    } catch (err) {
      return { ok: false, error: `its "${name}" export cannot be cloned: ${serializeThrown(err, 'load').message}` };
    }
  }
  return report;
}

const { paths } = workerData as ProbeRequest;
for (const path of paths) {
  post({ type: 'probing', path });
  post({ type: 'probed', path, report: await probe(path) });
}
