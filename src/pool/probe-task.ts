/**
 * Thread side of the registry's probe: imports each worker module of a ProbeTask on this pool
 * thread, one after the other, and reports what it exports without running a handler. The modules
 * stay loaded here, so this thread's first jobs of them start at once.
 */
import { parentPort } from 'node:worker_threads';
import { loadWorkerModule } from './loader.ts';
import type { ModuleReport, ProbeTask, ProbingMessage } from './protocol.ts';
import { serializeThrown } from './thrown.ts';

export async function runProbe(task: ProbeTask): Promise<ModuleReport[]> {
  const reports: ModuleReport[] = [];
  for (const path of task.paths) {
    // The registry's clock for this module starts here: a hang is charged to the module it names.
    parentPort?.postMessage({ type: 'spindle:probing', probe: task.probe, path } satisfies ProbingMessage);
    reports.push(await probeModule(path));
  }
  return reports;
}

async function probeModule(path: string): Promise<ModuleReport> {
  const loaded = await loadWorkerModule(path);
  if (!loaded.ok) return { ok: false, error: loaded.reason };
  const { module } = loaded;
  for (const [name, value] of [['options', module.options], ['schedule', module.schedule]] as const) {
    try {
      structuredClone(value);
    } catch (err) {
      return { ok: false, error: `its "${name}" export cannot be cloned: ${serializeThrown(err, 'load').message}` };
    }
  }
  const report: ModuleReport = { ok: true, options: module.options, hasDefault: true, hasCompensate: module.compensate !== undefined };
  if (module.schedule !== undefined) report.schedule = module.schedule;
  return report;
}
