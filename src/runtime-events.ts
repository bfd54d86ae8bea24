/**
 * What a running supervisor tells the outside: its runtime events and its in-flight jobs. The
 * debug socket, the HTTP API and the metrics read these shapes; the supervisor produces them.
 */
import type { AttemptOutcome, JobState } from './job.ts';
import type { AbortReason } from './pool/protocol.ts';

/** What the runtime tells an inspector, beside the actors' own events. */
export interface RuntimeEvents {
  /** `waitMs`: from the job's run_at to its claim, both by the database's clock (the queue wait). */
  'job:claimed': [{ id: string; type: string; attempt: number; waitMs: number }];
  /** `thread`: its number in the pool, 1 to the concurrency (`threadId` is Node's, which grows as threads are replaced). */
  'job:started': [{ id: string; type: string; attempt: number; threadId: number; thread: number }];
  /** `state` is the job's state after this attempt ('queued' for a retry), null when the claim was lost. */
  'job:finished': [{ id: string; type: string; attempt: number; outcome: AttemptOutcome; state: JobState | null; ms: number }];
  'job:progress': [{ id: string; percent: number; message: string | null }];
  'claim:lost': [{ id: string; attempt: number; reason: string }];
  'job:reaped': [{ id: string; attempt: number; supervisorId: string | null; state: string }];
  'leader:changed': [{ leader: boolean }];
}

/** An in-flight job as the debug socket's `jobs` op shows it. */
export interface InFlightView {
  id: string;
  type: string;
  attempt: number;
  maxAttempts: number;
  /** Node's id of its thread (as in the log), once one has taken it. */
  threadId: number | null;
  /** Its thread's number in the pool, 1 to the concurrency, once one has taken it: what people are shown. */
  thread: number | null;
  claimedAt: string;
  startedAt: string | null;
  elapsedMs: number;
  deadline: string | null;
  progress: number | null;
  message: string | null;
  aborting: AbortReason | null;
}
