/**
 * The contract between the supervisor and a worker thread. Both sides import
 * this file and nothing else of each other.
 */
import type { MessagePort } from 'node:worker_threads';

/** Why a running job is being stopped. */
export type AbortReason = 'timeout' | 'cancel' | 'lost' | 'shutdown';

/** What the supervisor sends to a thread with each job (the Piscina task). */
export interface JobTask {
  mode: 'run' | 'compensate';
  jobId: string;
  type: string;
  /** Absolute path or file: URL of the worker module. */
  modulePath: string;
  input: unknown;
  attempt: number;
  maxAttempts: number;
  /** One channel per job, transferred with the task; carries ThreadMessage one way and SupervisorMessage the other. */
  port: MessagePort;
  /** With mode 'compensate': the cancel reason. */
  cancelReason?: string;
}

/** Messages a thread posts on the job's port. */
export type ThreadMessage =
  | { type: 'started'; threadId: number }
  | { type: 'progress'; percent: number; message?: string; data?: unknown }
  | { type: 'log'; line: string };

/** Messages the supervisor posts on the job's port. */
export type SupervisorMessage = { type: 'abort'; reason: AbortReason; detail?: string };

/** An error as it crosses the thread boundary: always readable, whatever was thrown. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** The handler threw a PermanentError: do not retry. */
  permanent?: boolean;
  /** Where it came from: the handler, loading the module, cloning the result. */
  phase?: 'load' | 'handler' | 'clone' | 'thread';
}

/** What a thread resolves its Piscina task with. Handler errors are values, not rejections. */
export type TaskResult =
  | { ok: true; output: unknown; abortedBy?: AbortReason }
  | { ok: false; error: SerializedError; abortedBy?: AbortReason };
