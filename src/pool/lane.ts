/**
 * One Piscina pool and the jobs waiting for it (a Lane). The pool (pool.ts) has a main lane, one
 * per distinct `maxMemoryMb` (Piscina's resource limits are per pool), and compensation lanes.
 *
 * - Jobs wait here, in FIFO order, rather than in Piscina's queue: Piscina does not keep abortable
 *   tasks in order (five queued on one thread ran a, c, e, d, b).
 * - Dispatch waits for the end of the current tick, so the jobs a claim hands over together can be
 *   batched together: when the head of the queue is a type whose recent run time on a thread
 *   averages under `batchBelowMs`, the short jobs queued behind it go with it in one Batch, up to
 *   `maxBatchJobs` and about BATCH_BUDGET_MS of work. A type not measured yet runs one job per task.
 * - Threads do not wait for the supervisor between jobs: when every thread is busy, the next
 *   waiting job is fed to a batch whose thread is on its last job and expected to finish it soon;
 *   the thread starts it the moment it is done, without a round trip through this thread.
 * - A thread that is free while nothing waits takes half the jobs a batch has not started (a job
 *   far longer than its type's average holds up nothing).
 */
import type { Piscina } from 'piscina';
import { Batch, type BatchHost, type BatchLane } from './batch.ts';
import type { JobRun } from './job-run.ts';

/** A batch holds about this much expected work (ms), so a queue of 1 ms jobs is not one 256 ms task. */
const BATCH_BUDGET_MS = 8;

/** What a Lane needs of its pool, beyond what its batches and jobs need. */
export interface LaneHost extends BatchHost {
  /** The run's expected time (ms) if it may share a batch, else undefined. */
  batchCost(run: JobRun): number | undefined;
  /** It may be fed to a running batch. */
  feedable(run: JobRun): boolean;
  jobsTaken(jobs: number): void;
}

/** One Piscina pool and the jobs waiting for it; see the file comment. */
export class Lane implements BatchLane {
  readonly piscina: Piscina;
  readonly memoryLimitMb: number | undefined;
  readonly #capacity: number;
  readonly #host: LaneHost;
  /** Tasks (single jobs or batches) handed to Piscina and not yet settled there. */
  #active = 0;
  readonly #waiting: JobRun[] = [];
  /** Batches handed to Piscina and not yet settled there. */
  readonly #batches = new Set<Batch>();
  #pumpQueued = false;
  /** The number of each of its threads that has taken a job, by Node's thread id (see threadNumber). */
  readonly #numbers = new Map<number, number>();

  constructor(piscina: Piscina, capacity: number, memoryLimitMb: number | undefined, host: LaneHost) {
    this.piscina = piscina;
    this.#capacity = capacity;
    this.memoryLimitMb = memoryLimitMb;
    this.#host = host;
  }

  /**
   * The number, 1 to its most threads, of its thread with this id: the lowest that none of its live
   * threads has, so a thread that replaces one takes over its number. Looked up once per job; the
   * numbers of threads that have gone are dropped only when a new thread needs one.
   */
  threadNumber(threadId: number): number {
    const numbers = this.#numbers;
    const known = numbers.get(threadId);
    if (known !== undefined) return known;
    const live = new Set(this.piscina.threads.map((worker) => worker.threadId));
    for (const id of numbers.keys()) if (!live.has(id)) numbers.delete(id);
    const taken = new Set(numbers.values());
    let number = 1;
    while (taken.has(number)) number += 1;
    numbers.set(threadId, number);
    return number;
  }

  /** Queues the run; it is dispatched (or fed to a batch) at the end of this tick. */
  submit(run: JobRun): void {
    this.#waiting.push(run);
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    queueMicrotask(() => {
      this.#pumpQueued = false;
      this.#pump();
    });
  }

  /** Puts runs that never started back at the head of the queue (their batch did not run them). */
  requeue(runs: readonly JobRun[]): void {
    this.#waiting.unshift(...runs);
  }

  /** Dispatches what it can now (after a requeue while no slot was released, or when a batch can be fed). */
  pumpNow(): void {
    this.#pump();
  }

  /** Takes a run that was never dispatched out of the queue; false if it was dispatched. */
  withdraw(run: JobRun): boolean {
    const index = this.#waiting.indexOf(run);
    if (index === -1) return false;
    this.#waiting.splice(index, 1);
    return true;
  }

  /** A batch went to Piscina. */
  batchDispatched(batch: Batch): void {
    this.#batches.add(batch);
  }

  /** A dispatched task settled in Piscina: its thread is free (or being replaced). */
  release(batch?: Batch): void {
    if (batch !== undefined) this.#batches.delete(batch);
    this.#active -= 1;
    this.#pump();
  }

  #pump(): void {
    const waiting = this.#waiting;
    const capacity = this.#capacity;
    while (waiting.length > 0) {
      if (this.#active < capacity) {
        const group = this.#takeGroup(capacity - this.#active);
        this.#active += 1;
        if (group.length === 1 && !this.#host.feedsBehind(group[0]!)) group[0]!.dispatch();
        else new Batch(this, this.#host, group).dispatch();
      } else if (!this.#feed()) {
        return;
      }
    }
    if (this.#active < capacity) this.#steal();
  }

  /** Feeds the head of the queue to a batch about to run out of jobs; false if none can take it. */
  #feed(): boolean {
    if (!this.#host.feedable(this.#waiting[0]!)) return false;
    for (const batch of this.#batches) {
      if (batch.isHungry()) {
        batch.feed(this.#takeGroup(this.#capacity, batch.room()));
        return true;
      }
    }
    return false;
  }

  /**
   * A thread is free and nothing waits: takes half the jobs held up behind a
   * running job, from the batch with the most. Never from a batch whose thread
   * has not begun or is between jobs: that thread starts them as soon as a free
   * one would, and taking them would only send them twice.
   */
  #steal(): void {
    let richest: Batch | undefined;
    let most = 0;
    for (const batch of this.#batches) {
      const heldUp = batch.heldUpCount();
      if (heldUp > most) {
        richest = batch;
        most = heldUp;
      }
    }
    if (richest === undefined) return;
    const taken = richest.withdrawUnstarted(Math.ceil(most / 2));
    if (taken.length === 0) return;
    this.#host.jobsTaken(taken.length);
    this.requeue(taken);
    this.#pump();
  }

  /**
   * The next task's jobs: the head of the queue alone, or, if it is short, the
   * short jobs queued right behind it, up to maxBatchJobs, about BATCH_BUDGET_MS
   * of expected work, a fair share of the queue for each of `threads`, and
   * `most` (the cells a batch being fed has left).
   */
  #takeGroup(threads: number, most = Infinity): JobRun[] {
    const waiting = this.#waiting;
    const host = this.#host;
    const { maxBatchJobs } = host;
    let count = 1;
    let cost = host.batchCost(waiting[0]!);
    if (cost !== undefined && maxBatchJobs > 1) {
      const share = Math.ceil(waiting.length / threads);
      const limit = Math.min(maxBatchJobs, share, waiting.length, most);
      while (count < limit && cost < BATCH_BUDGET_MS) {
        const next = host.batchCost(waiting[count]!);
        if (next === undefined) break;
        cost += next;
        count += 1;
      }
    }
    return waiting.splice(0, count);
  }
}
