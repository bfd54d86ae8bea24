/** The cron schedules a supervisor fires when it leads: of its worker modules and its workflows. */
import type { Registry } from '../pool/registry.ts';
import { parseSchedule, type ModuleSchedule, type WorkflowRegistry } from './registry.ts';

/** A schedule the leader fires: jobs of a worker module or runs of a workflow. */
export interface ScheduleEntry {
  /** Unique: `job:<type>` or `workflow:<name>`. */
  key: string;
  target: { kind: 'job'; type: string } | { kind: 'workflow'; name: string };
  schedule: ModuleSchedule;
}

/**
 * Reads every `schedule` export. A worker module's is a cron string or `{ cron, timezone?,
 * catchUp?, input? }`; a bad one is reported through `warn` and left out (its module still runs jobs).
 */
export function collectSchedules(registry: Registry, workflows: WorkflowRegistry, warn: (message: string) => void): ScheduleEntry[] {
  const entries: ScheduleEntry[] = [];
  for (const info of registry.values()) {
    if (info.schedule === undefined || info.loadError) continue;
    try {
      const schedule = parseSchedule(info.schedule, undefined, `worker "${info.type}" (${info.path})`);
      entries.push({ key: `job:${info.type}`, target: { kind: 'job', type: info.type }, schedule });
    } catch (err) {
      warn((err as Error).message);
    }
  }
  for (const module of workflows.values()) {
    if (module.schedule) {
      entries.push({ key: `workflow:${module.name}`, target: { kind: 'workflow', name: module.name }, schedule: module.schedule });
    }
  }
  return entries;
}
