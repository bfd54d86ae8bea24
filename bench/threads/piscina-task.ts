/** The Piscina thread entry of the bare-Piscina system: the benchmark work and nothing else. */
import { doWork, type BenchJob, type WorkKind, type WorkResult } from '../work.ts';

/** One task: which work, and the job. */
export interface PiscinaTask {
  kind: WorkKind;
  job: BenchJob;
}

/** Runs the task on this thread. */
export default function run(task: PiscinaTask): WorkResult {
  return doWork(task.kind, task.job);
}
