/**
 * The step writes of every run a supervisor resumes, grouped: the writes that arrive while a
 * statement is under way go together in the next one, so a busy supervisor pays one round trip and
 * one commit for many steps, and a quiet one sends each write at once. A write resolves once its
 * statement has committed, so a run goes on only after its step is durable, as with a write of its
 * own. Two writes of one step go one after the other, in the order made (a step that ends must not
 * be passed by its record as waiting); a write the database refuses for its data is found alone and
 * fails only its run.
 */
import { writeIsolating } from '../db/errors.ts';
import type { Queryable } from '../db/queryable.ts';
import { writeWorkflowStepsFenced, type FencedStepWrite, type StepWritten } from '../db/workflows.ts';

/** Statements under way at once: a second one fills while the first commits. */
const MAX_IN_FLIGHT = 2;
/** Writes per statement. */
const MAX_BATCH = 200;

interface Pending extends FencedStepWrite {
  resolve(written: StepWritten | undefined): void;
  reject(error: unknown): void;
}

export class StepWriter {
  readonly #db: Queryable;
  #pending: Pending[] = [];
  /** Steps (run and seq) with a write under way: their next write waits for it. */
  readonly #busy = new Set<string>();
  #inFlight = 0;

  constructor(db: Queryable) {
    this.#db = db;
  }

  /** Writes a step under its run's claim; undefined when the claim was taken (nothing was written). */
  write(write: FencedStepWrite): Promise<StepWritten | undefined> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ ...write, resolve, reject });
      this.#send();
    });
  }

  #send(): void {
    while (this.#inFlight < MAX_IN_FLIGHT) {
      const batch = this.#take();
      if (batch.length === 0) return;
      this.#inFlight++;
      void this.#write(batch).finally(() => {
        this.#inFlight--;
        for (const w of batch) this.#busy.delete(stepKey(w));
        this.#send();
      });
    }
  }

  /** The oldest pending writes, at most one per step and none of a step with a write under way. */
  #take(): Pending[] {
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const w of this.#pending) {
      const key = stepKey(w);
      if (batch.length < MAX_BATCH && !this.#busy.has(key)) {
        this.#busy.add(key);
        batch.push(w);
      } else {
        rest.push(w);
      }
    }
    this.#pending = rest;
    return batch;
  }

  async #write(batch: Pending[]): Promise<void> {
    const refused = new Map<Pending, unknown>();
    let written: Map<string, StepWritten>;
    try {
      written = await writeIsolating(
        batch,
        (writes) => writeWorkflowStepsFenced(this.#db, writes),
        async (write, error) => {
          refused.set(write, error);
          return new Map();
        },
        (a, b) => new Map([...a, ...b]),
      );
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    for (const w of batch) {
      if (refused.has(w)) w.reject(refused.get(w));
      else w.resolve(written.get(w.claim.runId));
    }
  }
}

function stepKey(w: FencedStepWrite): string {
  return `${w.claim.runId}\u0000${w.step.seq}`;
}
