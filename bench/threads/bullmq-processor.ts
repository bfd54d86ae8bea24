/**
 * BullMQ's sandboxed processor for the CPU scenario: BullMQ loads this file in a
 * worker thread (`useWorkerThreads: true`) and calls it once per job.
 */
import { doWork, type BenchJob, type WorkKind, type WorkResult } from '../work.ts';

/** The part of BullMQ's SandboxedJob used here. */
interface SandboxedJob {
  name: string;
  data: BenchJob;
}

/** Runs the job's work (its name is the work kind) on this thread. */
export default async function process(job: SandboxedJob): Promise<WorkResult> {
  return doWork(job.name as WorkKind, job.data);
}
