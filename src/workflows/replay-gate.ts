/**
 * The order of a replay. A run's body may run branches side by side (Promise.all, Promise.race);
 * which of its calls ends first decides what the body does next. So a replay hands the recorded
 * results back in the order the body first saw them end (each recorded with its `done_seq`), one at
 * a time, letting the body settle after each (a macrotask: every microtask of its reaction has run).
 * Every other call (a new one, or one still waiting when it was recorded) is held until all of them
 * have been handed back, then let go in the order it came. The body then calls what it called
 * before, in the same order, and a recorded call can be told by its name and occurrence.
 *
 * When the body has settled, holds calls, and still has not made the call whose result is due, the
 * code is not the code that recorded the run: `onStuck` names both.
 */

/** A recorded call that ended, in the order the body saw it end. */
export interface EndedCall {
  seq: number;
  /** How the call reads in an error: `step "charge"`. */
  label: string;
}

/** What a call that came too early, or was never recorded, waits on. */
interface Waiting {
  label: string;
  resolve(): void;
  reject(error: unknown): void;
}

export class ReplayGate {
  readonly #order: readonly EndedCall[];
  #next = 0;
  /** Calls of recorded ended results that came before their turn, by seq. */
  readonly #early = new Map<number, Waiting>();
  /** Calls held until every recorded result has been handed back, in the order they came. */
  readonly #held: Waiting[] = [];
  #pumpScheduled = false;
  #failed: unknown;
  readonly #onStuck: (due: EndedCall, reached: string | undefined) => unknown;

  /** `onStuck` returns the error the waiting calls are rejected with. */
  constructor(ended: readonly EndedCall[], onStuck: (due: EndedCall, reached: string | undefined) => unknown) {
    this.#order = ended;
    this.#onStuck = onStuck;
  }

  /** True once every recorded result has been handed back: calls go through at once. */
  get open(): boolean {
    return this.#next === this.#order.length;
  }

  /** Resolves when the recorded result of call `seq` is due. */
  turn(seq: number, label: string): Promise<void> {
    return this.#wait((waiting) => this.#early.set(seq, waiting), label);
  }

  /** Resolves when every recorded result has been handed back. */
  pass(label: string): Promise<void> {
    if (this.open) return Promise.resolve();
    return this.#wait((waiting) => this.#held.push(waiting), label);
  }

  /** Rejects every waiting call with `error` (the run stops). */
  fail(error: unknown): void {
    this.#failed ??= error;
    for (const waiting of this.#waiting()) waiting.reject(error);
    this.#early.clear();
    this.#held.length = 0;
  }

  /** The body returned or threw: nothing more will come of it but what is running now. */
  bodySettled(): void {
    this.#schedule();
  }

  #wait(keep: (waiting: Waiting) => void, label: string): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    const promise = new Promise<void>((resolve, reject) => keep({ label, resolve, reject }));
    this.#schedule();
    return promise;
  }

  #schedule(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** Hands back the next due result if its call has come, else opens the gate or finds it stuck. */
  #pump(): void {
    if (this.#failed !== undefined) return;
    if (!this.open) {
      const due = this.#order[this.#next]!;
      const call = this.#early.get(due.seq);
      if (call) {
        this.#early.delete(due.seq);
        this.#next += 1;
        call.resolve();
        // The body reacts to this result before the next one is handed back.
        this.#schedule();
        return;
      }
      const first = this.#waiting()[0];
      // Nothing waits here: the body is busy elsewhere, or done. Its next call schedules a pump.
      if (first === undefined) return;
      this.fail(this.#onStuck(due, first.label));
      return;
    }
    for (const waiting of this.#held.splice(0)) waiting.resolve();
  }

  /** Every waiting call, the early ones by their turn, then the held ones in the order they came. */
  #waiting(): Waiting[] {
    return [...this.#early.values(), ...this.#held];
  }
}
