/**
 * Short jobs share thread hops: several jobs of one lane go to a thread in one Piscina task (a
 * Batch) and run there one after another. Each still has its own 'started' (its timeout clock),
 * progress, logs, abort and outcome, streamed as it ends. Stopping the running job of a batch may
 * terminate the thread: the jobs of the batch that had not started are then 'interrupted' (back in
 * the queue, no attempt used). The lane (lane.ts) decides which jobs go together, feeds a running
 * batch more, and takes back the ones its thread has not started.
 */
import type { Worker } from 'node:worker_threads';
import type { JobRun, RunCarrier, RunHost, RunLane } from './job-run.ts';
import {
  ABORT_REASONS,
  SLOT_WITHDRAWN,
  threadCell,
  type AbortMessage,
  type BatchDoneMessage,
  type BatchResult,
  type BatchTask,
  type FeedMessage,
  type SerializedError,
  type ThreadMessage,
} from './protocol.ts';
import { afterExit, describeDeath, terminateTask, threadHolding } from './task-thread.ts';

/**
 * Most abort cells a batch allocates up front, so most jobs it takes in all (fed ones included),
 * unless it starts with more.
 */
const MAX_BATCH_SLOTS = 1024;

/** What a Batch needs of its pool, beyond what its jobs need. */
export interface BatchHost extends RunHost {
  readonly maxBatchJobs: number;
  /** Its type is measured short enough for a waiting job to be fed behind it. */
  feedsBehind(run: JobRun): boolean;
  batchDispatched(jobs: number): void;
  jobsFed(jobs: number): void;
}

/** What a Batch needs of its lane (lane.ts), beyond what its jobs need. */
export interface BatchLane extends RunLane {
  /** Puts runs that never started back at the head of the queue. */
  requeue(runs: readonly JobRun[]): void;
  /** Dispatches what it can now. */
  pumpNow(): void;
  batchDispatched(batch: Batch): void;
  release(batch?: Batch): void;
}

/**
 * Several jobs of one lane in one Piscina task, with one Int32 abort cell per
 * job (see BatchTask). It holds one of its lane's slots
 * until its task settles there. The jobs run one after another; the thread
 * reports each as it starts and ends, and this routes the reports to the jobs'
 * JobRuns. The lane may feed it more jobs while it runs, and take back the ones
 * its thread has not started.
 */
export class Batch implements RunCarrier {
  readonly #lane: BatchLane;
  readonly #host: BatchHost;
  /** Its task number on the thread channels, once dispatched. */
  #taskId = 0;
  /** The thread running it, from its first 'started'. */
  #threadId: number | undefined;
  readonly #flags: Int32Array;
  readonly #runs: JobRun[];
  readonly #controller = new AbortController();
  #worker: Worker | undefined;
  /** Piscina was told to abort the task: the thread is being terminated. */
  #terminating = false;
  /** The job whose abort made us terminate the thread. */
  #stopping: JobRun | undefined;
  /** The task settled in Piscina. */
  #settled = false;
  /** The slot the thread started last; the ones before it are started or skipped. */
  #lastStarted = -1;

  constructor(lane: BatchLane, host: BatchHost, runs: readonly JobRun[]) {
    this.#lane = lane;
    this.#host = host;
    this.#runs = [...runs];
    // Room to be fed as many again, within MAX_BATCH_SLOTS; never fewer cells than jobs (maxBatchJobs may pass it).
    const slots = Math.max(runs.length, Math.min(MAX_BATCH_SLOTS, host.maxBatchJobs * 2));
    // One cell per slot, and the thread cell (see threadCell).
    this.#flags = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * (slots + 1)));
  }

  dispatch(): void {
    const runs = this.#runs;
    for (let slot = 0; slot < runs.length; slot++) runs[slot]!.joinBatch(this, slot);
    this.#taskId = this.#host.channels.open(this);
    const task: BatchTask = { mode: 'batch', task: this.#taskId, jobs: runs.map((run) => run.task), flags: this.#flags };
    this.#host.batchDispatched(runs.length);
    this.#lane.batchDispatched(this);
    this.#lane.piscina
      .run(task, { signal: this.#controller.signal })
      .then(
        (result: BatchResult) => this.#onResult(result),
        (err: unknown) => this.#onRejected(err),
      );
  }

  /**
   * Its thread runs its last job, one expected to end soon, and has room for
   * more: a waiting job fed now starts the moment that one ends.
   */
  isHungry(): boolean {
    const running = this.#running();
    if (running === undefined || this.room() === 0 || !this.#host.feedsBehind(running)) return false;
    return this.unstartedCount() === 0;
  }

  /** The job its thread is running now, if any (none before it begins, between jobs, or once it ends). */
  #running(): JobRun | undefined {
    if (this.#settled || this.#terminating) return undefined;
    const run = this.#runs[this.#lastStarted];
    return run === undefined || run.isDecided ? undefined : run;
  }

  /** How many more jobs it can be fed: one abort cell each. */
  room(): number {
    return threadCell(this.#flags) - this.#runs.length;
  }

  /** Jobs that wait for the job its thread is running (0 if it runs none). */
  heldUpCount(): number {
    return this.#running() === undefined ? 0 : this.unstartedCount();
  }

  /** Jobs it holds that its thread has not started (nor been told to skip). */
  unstartedCount(): number {
    let count = 0;
    for (let slot = this.#lastStarted + 1; slot < this.#runs.length; slot++) {
      const run = this.#runs[slot]!;
      if (!run.isDecided && !run.isStarted && run.inBatch(this)) count += 1;
    }
    return count;
  }

  /** Appends `runs` to the thread's list (see FeedMessage). */
  feed(runs: readonly JobRun[]): void {
    try {
      const feed: FeedMessage = { type: 'feed', task: this.#taskId, jobs: runs.map((run) => run.task) };
      // Fed only once it has started (isHungry), so over a channel the pool has.
      const threadId = this.#threadId ?? 0;
      if (!this.#host.channels.post(threadId, feed)) throw new Error(`no channel to thread ${threadId}`);
    } catch {
      // An input that cannot be cloned: these run alone, where only that job fails.
      for (const run of runs) run.batchable = false;
      this.#lane.requeue(runs);
      return;
    }
    for (const run of runs) {
      run.joinBatch(this, this.#runs.length);
      this.#runs.push(run);
    }
    this.#host.jobsFed(runs.length);
  }

  /** Takes back up to `count` of the jobs its thread has not started, the last ones first, in queue order. */
  withdrawUnstarted(count: number): JobRun[] {
    const taken: JobRun[] = [];
    if (this.#settled || this.#terminating) return taken;
    for (let slot = this.#runs.length - 1; slot > this.#lastStarted && taken.length < count; slot--) {
      const run = this.#runs[slot]!;
      if (run.isDecided || run.isStarted || !run.inBatch(this)) continue;
      if (Atomics.compareExchange(this.#flags, slot, 0, SLOT_WITHDRAWN) !== 0) continue;
      run.leaveBatch(false);
      taken.push(run);
    }
    return taken.reverse();
  }

  /** Stops the job in `slot`: at once if its thread has not started it, else by its signal, then the grace. */
  abortJob(run: JobRun, slot: number, message: AbortMessage): void {
    this.#drain();
    if (run.isDecided) return;
    const code = ABORT_REASONS.indexOf(message.reason) + 1;
    // Whoever swaps the cell first wins: the thread (it starts the job) or we (it never will).
    if (Atomics.compareExchange(this.#flags, slot, 0, code) === 0) {
      run.settleAborted();
      return;
    }
    message.slot = slot;
    message.task = this.#taskId;
    this.#host.channels.post(this.#runningOn(), message);
    // After the post: a thread that sees the flag finds the message already on its channel.
    Atomics.store(this.#flags, slot, code);
    run.armGrace(() => this.#terminate(run));
  }

  /** `run`'s grace is over: terminate the thread, unless it has returned meanwhile. */
  #terminate(run: JobRun): void {
    if (this.#settled || this.#terminating) return;
    this.#drain();
    if (run.isDecided) return;
    this.#terminating = true;
    this.#stopping = run;
    this.#worker = terminateTask(this.#lane, this.#controller, this.#worker);
  }

  /** The thread that has it, if one has taken it (0: none yet). */
  #runningOn(): number {
    return threadHolding(this.#threadId, this.#flags);
  }

  onThreadMessage(message: ThreadMessage): void {
    if (message.type === 'done') {
      this.#onDone(message);
      return;
    }
    const run = this.#runs[message.slot ?? -1];
    if (run === undefined) return;
    if (message.type === 'started') this.#onStarted(message.slot!, message.threadId, message.loading === true);
    else run.onThreadMessage(message);
  }

  #onDone(message: BatchDoneMessage): void {
    this.#runs[message.slot]?.settle(message.result);
    if (message.next !== undefined) this.#onStarted(message.next, message.threadId);
  }

  #onStarted(slot: number, threadId: number, loading = false): void {
    this.#threadId = threadId;
    this.#worker ??= this.#lane.piscina.threads.find((worker) => worker.threadId === threadId);
    this.#lastStarted = slot;
    this.#runs[slot]?.onStarted(threadId, this.#worker, loading);
    // Its thread is on its last job: a job waiting for a thread can be fed to it now.
    if (slot === this.#runs.length - 1) this.#lane.pumpNow();
  }

  /** Delivers what the thread has posted so far. */
  #drain(): void {
    this.#host.channels.drain(this.#runningOn(), this.#taskId);
  }

  #onResult(result: BatchResult): void {
    this.#settled = true;
    this.#host.channels.whenReady(this.#runningOn(), () => this.#afterResult(result));
  }

  #afterResult(result: BatchResult): void {
    this.#drain();
    this.#host.channels.close(this.#taskId);
    // Jobs fed after the thread had finished the rest, or left because it must exit (an error no job
    // owns): the swap of their cells makes sure they never start there.
    const notStarted: JobRun[] = [];
    const lost: JobRun[] = [];
    for (let slot = 0; slot < this.#runs.length; slot++) {
      const run = this.#runs[slot]!;
      if (run.isDecided || !run.inBatch(this)) continue;
      if (Atomics.compareExchange(this.#flags, slot, 0, SLOT_WITHDRAWN) === 0 && !run.isStarted) notStarted.push(run);
      else lost.push(run);
    }
    if (result.skipped > 0) this.#giveBack(notStarted, 'its thread had to exit');
    else this.#giveBack(notStarted, 'the pool is closing', false);
    this.#failRest(lost, { name: 'WorkerCrashError', message: 'the thread ended a batch without this job', phase: 'thread' });
    this.#lane.release(this);
  }

  #onRejected(err: unknown): void {
    this.#settled = true;
    this.#host.channels.whenReady(this.#runningOn(), () => this.#afterRejection(err));
  }

  #afterRejection(err: unknown): void {
    this.#drain();
    this.#host.channels.close(this.#taskId);
    const left = this.#runs.filter((run) => !run.isDecided && run.inBatch(this));
    if (this.#terminating) {
      const cause = this.#stopping === undefined ? 'another job' : `job ${this.#stopping.jobId}`;
      this.#endAfterDeath(left, undefined, `its thread was terminated to stop ${cause} of the same batch`);
      this.#lane.release(this);
      return;
    }
    const crash = describeDeath(err, this.#lane, this.#worker);
    if (crash === undefined) {
      // Piscina refused the task (an input that cannot be cloned) or thread.ts failed: each job alone.
      for (const run of left) run.batchable = false;
      this.#giveBack(left, 'its batch could not be sent');
      this.#lane.release(this);
      return;
    }
    if (left.every((run) => !run.isStarted) && !this.#host.closing) {
      // The thread died before it began any of them (see JobRun's rejection): nothing ran, try again.
      this.#giveBack(left, crash.message);
    } else {
      const running = left.find((run) => run.isStarted);
      const cause = running === undefined ? 'a job' : `job ${running.jobId}`;
      this.#endAfterDeath(left, crash, `its thread died (${crash.message}) running ${cause} of the same batch`);
    }
    this.#lane.release(this);
  }

  /**
   * The thread was terminated or died. The job it was running ends when the
   * thread has exited; the ones it had not started are interrupted at once (the
   * swap of their cells makes sure a dying thread cannot start them now).
   */
  #endAfterDeath(left: readonly JobRun[], crash: SerializedError | undefined, cause: string): void {
    let exited: Promise<boolean> | undefined;
    for (let slot = 0; slot < this.#runs.length; slot++) {
      const run = this.#runs[slot]!;
      if (run.isDecided || !left.includes(run)) continue;
      const neverStarted = Atomics.compareExchange(this.#flags, slot, 0, ABORT_REASONS.indexOf('shutdown') + 1) === 0;
      if (neverStarted && !run.isStarted) {
        if (run.abortReason !== undefined) run.settleAborted();
        else run.settleInterrupted(`job interrupted before it started: ${cause}`);
      } else {
        exited ??= afterExit(this.#worker, this.#host.exitWaitMs);
        run.settleDeath(crash, exited, `job interrupted: ${cause}`);
      }
    }
  }

  /**
   * Puts jobs that never started back at the head of the lane's queue. `failed`: this
   * batch could not run them, which counts towards MAX_REDISPATCHES (then they are interrupted).
   */
  #giveBack(left: readonly JobRun[], why: string, failed = true): void {
    const again: JobRun[] = [];
    for (const run of left) {
      if (run.abortReason !== undefined) run.settleAborted();
      else if (this.#host.closing || !run.leaveBatch(failed)) run.settleInterrupted(`job interrupted before it started: ${why}`);
      else again.push(run);
    }
    this.#lane.requeue(again);
  }

  #failRest(left: readonly JobRun[], error: SerializedError): void {
    for (const run of left) run.settle({ ok: false, error });
  }
}
