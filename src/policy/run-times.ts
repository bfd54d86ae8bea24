/**
 * How long jobs run, measured where they run: each job's time on its thread, as the thread reports
 * it. One record serves every rule that reads run times: how much a supervisor claims
 * (claim-plan.ts) and which jobs share a thread hop (pool/batch-rules.ts).
 */

/** Run time assumed of a type not seen yet: pessimistic, so a new type is not hoarded. */
export const UNKNOWN_RUN_MS = 1_000;
/** Weight of the newest run in a moving average. */
const NEWEST_WEIGHT = 0.2;

/** A job type's moving average, and how many runs it has seen. */
export interface TypeRunTime {
  averageMs: number;
  samples: number;
}

/** Moving averages of run time (ms), over all jobs (starting pessimistic) and per type. */
export class RunTimes {
  #all = UNKNOWN_RUN_MS;
  readonly #byType = new Map<string, TypeRunTime>();

  /** A job of `type` ran `ms` on its thread. */
  record(type: string, ms: number): void {
    this.#all += (ms - this.#all) * NEWEST_WEIGHT;
    const known = this.#byType.get(type);
    if (known === undefined) {
      this.#byType.set(type, { averageMs: ms, samples: 1 });
    } else {
      known.averageMs += (ms - known.averageMs) * NEWEST_WEIGHT;
      known.samples += 1;
    }
  }

  /** The average over all jobs: UNKNOWN_RUN_MS before the first, then moving towards what they take. */
  get all(): number {
    return this.#all;
  }

  /** The average of `type`, or UNKNOWN_RUN_MS before its first job. */
  of(type: string): number {
    return this.#byType.get(type)?.averageMs ?? UNKNOWN_RUN_MS;
  }

  /** What is known of `type`: undefined before its first job. */
  known(type: string): Readonly<TypeRunTime> | undefined {
    return this.#byType.get(type);
  }
}
