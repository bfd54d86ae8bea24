/**
 * The contract between the scenarios and the systems they measure. A scenario
 * only ever talks to a RunningSystem; everything a system needs to know about
 * its own library stays in its adapter file.
 */
import type { BenchJob, WorkKind } from '../work.ts';

/** What the report says about a system. */
export interface SystemInfo {
  /** The id used on the command line (`--systems=`) and in results. */
  name: string;
  /** The label in tables and the chart. */
  title: string;
  /** The package and version measured, e.g. `graphile-worker 0.17.3`. */
  version: string;
  /** Where its jobs live: `PostgreSQL`, `Redis`, or `none`. */
  store: string;
  /** Where handlers run, per work kind when it differs. */
  handlers: string;
  /** The settings used, as one line for people. */
  settings: string;
  /** The moment a job counts as finished in the throughput scenarios. */
  finishedWhen: string;
}

/** How to start a system for one run. */
export interface StartOptions {
  databaseUrl: string;
  /** The only kind of job this run enqueues. */
  kind: WorkKind;
  /** Threads for systems that run handlers on threads (the same for all of them). */
  threads: number;
  /**
   * For the memory scenario: main-thread handlers wait this long after the work, so jobs stay in
   * flight (graphile-worker, BullMQ's in-process processor); others ignore it.
   */
  holdMs?: number;
}

/** A started system, ready to take jobs. */
export interface RunningSystem {
  /**
   * True when enqueueBatch() is one atomic write: no job of the batch can start
   * before the call returns. False when jobs may start during the call.
   */
  enqueueIsAtomic: boolean;
  /** Enqueues all jobs in one call (atomic when enqueueIsAtomic). */
  enqueueBatch(jobs: BenchJob[]): Promise<void>;
  /** Enqueues one job (resolves when the system has accepted it). */
  enqueueOne(job: BenchJob): Promise<void>;
  /**
   * Resolves once `total` jobs have finished since start, with the wallClockMs()
   * at which that total was reached; rejects after `timeoutMs`.
   */
  waitForFinished(total: number, timeoutMs: number): Promise<number>;
  /** For `stamp` jobs: when each job's handler started, by job seq. */
  startTimes(): Promise<Map<number, number>>;
  /**
   * For `stamp` jobs, where the system can tell (spindle): when each job's claim came back from the
   * database, by job seq (wallClockMs()). Splits enqueue-to-start into the database's part and the hop.
   */
  claimTimes?(): Promise<Map<number, number>>;
  /** After stop(): jobs the system's store still holds as not done (0 after a clean run). */
  unfinished(): Promise<number>;
  /** Stops consuming and releases every resource (connections, threads, timers). */
  stop(): Promise<void>;
}

/** One system under test. */
export interface SystemAdapter {
  info: SystemInfo;
  /** Why this system cannot run here, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** Drops and recreates the system's own tables (or keys), so a run starts from nothing. */
  reset(databaseUrl: string): Promise<void>;
  /** Starts workers for one kind of job. */
  start(options: StartOptions): Promise<RunningSystem>;
}
