/** Bounds on one run; a run that goes past one fails with WorkflowBoundsError. */
export interface WorkflowLimits {
  /** Recorded calls (steps, jobs, sleeps, events, now, random, patches) per run. */
  maxSteps: number;
  /** JSON bytes of one step's result. */
  maxStepResultBytes: number;
  /** JSON bytes of all results of a run together, and of its output. */
  maxStateBytes: number;
  /** Attempts of each compensation before the run ends `compensation_failed`. */
  compensationAttempts: number;
  /**
   * Time (ms) a resume's body may wait on something that is not a `wf.*` call (a promise that
   * never settles, a timer, I/O outside a step) before the run fails: no record could ever resume it.
   */
  maxIdleMs: number;
}

/** Default WorkflowLimits. */
export const DEFAULT_WORKFLOW_LIMITS: WorkflowLimits = {
  maxSteps: 10_000,
  maxStepResultBytes: 256 * 1024,
  maxStateBytes: 16 * 1024 * 1024,
  compensationAttempts: 3,
  maxIdleMs: 5 * 60_000,
};
