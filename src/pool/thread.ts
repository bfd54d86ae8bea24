/**
 * The thread side of the pool. Piscina calls the default export once per task
 * (abortable tasks never share a thread, so at most one task runs here at a
 * time): a single job, or a batch of jobs run one after another (see
 * BatchTask), to which the supervisor may feed more while it runs. Each job
 * runs in a JobScope (job-scope.ts), which loads the job type's module, builds
 * `ctx`, runs the handler and turns whatever happens into a TaskResult: this
 * function does not reject.
 *
 * Errors that escape the handler (a timer that throws, a promise nobody
 * awaits) are traced to the job whose code scheduled them, through
 * AsyncLocalStorage. If that job is still running it fails with the error. If
 * it has finished, the error is reported on the parentPort and this thread
 * exits as soon as it has no job; Piscina starts a fresh one. A job handed to
 * the thread at that moment has not started (the exit comes before its
 * 'started' message) and the pool dispatches it again.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { parentPort, receiveMessageOnPort, threadId, type MessagePort } from 'node:worker_threads';
import {
  SLOT_STARTED,
  THREAD_ERROR_EXIT_CODE,
  type BatchDoneMessage,
  type BatchJob,
  type BatchResult,
  type BatchTask,
  type JobTask,
  type ModuleReport,
  type SupervisorMessage,
  type TaskResult,
  type ThreadErrorReport,
  type ThreadMessage,
  type ThreadTask,
  threadCell,
} from './protocol.ts';
import { cloneFailure, JobScope } from './job-scope.ts';
import { loadedModule } from './loader.ts';
import { runProbe } from './probe-task.ts';
import { isErrorLike, serializeThrown } from './thrown.ts';

const jobs = new AsyncLocalStorage<JobScope>();
/** The job running on this thread, if any. */
let current: JobScope | undefined;
/** Set after an error no running job owns: the thread ends at its next idle moment. */
let exitPending = false;
let handlersInstalled = false;

function installProcessHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('uncaughtException', (err) => onEscapedError('uncaughtException', err));
  process.on('unhandledRejection', (reason) => onEscapedError('unhandledRejection', reason));
}

function onEscapedError(kind: ThreadErrorReport['kind'], value: unknown): void {
  const owner = jobs.getStore();
  const words = kind === 'uncaughtException' ? 'uncaught exception' : 'unhandled rejection';
  const error = serializeThrown(value, 'handler', `${words} of a non-Error value`);
  if (isErrorLike(value)) error.message = `${words}: ${error.message}`;
  if (owner !== undefined && owner === current && !owner.settled) {
    owner.log([`[spindle] ${error.message}`]);
    owner.fail(error);
    return;
  }
  const report: ThreadErrorReport = { type: 'spindle:thread:error', kind, threadId, error };
  if (owner !== undefined) {
    report.jobId = owner.task.jobId;
    report.jobType = owner.task.type;
  }
  parentPort?.postMessage(report);
  exitPending = true;
  if (current === undefined) exitWhenIdle();
}

/**
 * The task and result of the last single job this thread finished, kept until
 * the next task: see exitThread().
 */
let lastJob: { task: number; result: TaskResult } | undefined;

/** The thread's channel to the pool (see PortHandoff), from thread-entry.cjs with the first task. */
let toPool: MessagePort | undefined;
/** The task this thread runs, and where the supervisor's messages about it go; other tasks' are moot. */
let openTask = 0;
let inbox: ((message: SupervisorMessage) => void) | undefined;

function routeSupervisorMessage(message: SupervisorMessage): void {
  if (message.task === openTask) inbox?.(message);
}

/** Delivers the supervisor's messages already queued on the channel. */
function drainSupervisor(): void {
  const port = toPool!;
  for (let entry = receiveMessageOnPort(port); entry !== undefined; entry = receiveMessageOnPort(port)) {
    routeSupervisorMessage(entry.message as SupervisorMessage);
  }
}

/** Takes a task: says on its cell which thread has it, and listens for messages about it. */
function openTaskOn(port: MessagePort, task: number, flags: Int32Array, receive: (message: SupervisorMessage) => void): void {
  if (toPool === undefined) {
    toPool = port;
    port.on('message', routeSupervisorMessage);
  }
  Atomics.store(flags, threadCell(flags), threadId);
  openTask = task;
  inbox = receive;
}

function closeTask(): void {
  openTask = 0;
  inbox = undefined;
}

function exitWhenIdle(): void {
  setImmediate(() => {
    if (current === undefined) exitThread();
  });
}

/**
 * Ends this thread after an error no job owns. Piscina posts a task's result
 * on a port of its own, and the supervisor may see the thread's 'exit' before
 * that message (Node orders only parentPort messages before 'exit'): Piscina
 * then rejects the task as if the thread had died running it, and the result
 * is lost. So the last job's result is posted again on the thread's channel,
 * where the pool drains it when that rejection comes (a batch's results travel
 * there anyway). If the pool already has the result, the copy is moot.
 */
function exitThread(): never {
  if (lastJob !== undefined) {
    try {
      toPool!.postMessage({ type: 'done', task: lastJob.task, slot: 0, result: lastJob.result, threadId } satisfies ThreadMessage);
    } catch {
      // Checked when the job ended: it can be cloned.
    }
  }
  process.exit(THREAD_ERROR_EXIT_CODE);
}

/** Piscina's task function: one job, or a batch of them, start to end; or the registry's probe. */
export default function runTask(task: ThreadTask, port: MessagePort): Promise<TaskResult | BatchResult | ModuleReport[]> {
  if (task.mode === 'probe') return runProbe(task);
  return task.mode === 'batch' ? runBatch(task, port) : runJob(task, port);
}

/** A job's 'started', saying whether this thread must import its module first. */
function startedMessage(job: BatchJob, task: number, slot?: number): ThreadMessage & { type: 'started' } {
  const message: ThreadMessage & { type: 'started' } = { type: 'started', task, threadId };
  if (slot !== undefined) message.slot = slot;
  if (loadedModule(job.modulePath) === undefined) message.loading = true;
  return message;
}

/** One job as a task of its own. */
async function runJob(task: JobTask, port: MessagePort): Promise<TaskResult> {
  installProcessHandlers();
  // Ends the thread before this job starts: the pool sees no 'started' and dispatches it again.
  if (exitPending) exitThread();
  lastJob = undefined;
  const job = new JobScope(task, { port, task: task.task, flags: task.abortFlag, slot: undefined, drain: drainSupervisor });
  openTaskOn(port, task.task, task.abortFlag, (message) => {
    if (message.type === 'abort') job.receive(message);
  });
  current = job;
  let result: TaskResult;
  try {
    job.post(startedMessage(task, task.task));
    result = await jobs.run(job, () => job.execute(true));
  } catch (err) {
    // Only a fault in this file gets here; the pool still gets a value.
    result = { ok: false, error: serializeThrown(err, 'thread', 'the worker thread threw a non-Error value') };
  }
  job.close();
  closeTask();
  lastJob = { task: task.task, result };
  current = undefined;
  if (exitPending) exitWhenIdle();
  return result;
}

/**
 * Several short jobs, one after another, each reported on the shared port as
 * it ends. A job whose flag the supervisor set before this thread reached it
 * is skipped: the supervisor has already given it its outcome.
 */
async function runBatch(task: BatchTask, port: MessagePort): Promise<BatchResult> {
  installProcessHandlers();
  if (exitPending) exitThread();
  lastJob = undefined;
  const { jobs: batch, flags } = task;
  openTaskOn(port, task.task, flags, (message) => {
    if (message.type === 'feed') {
      for (const job of message.jobs) batch.push(job);
      return;
    }
    // An abort for a job that has not started is in its flag too; one for a finished job is moot.
    if (current !== undefined && current.slot === message.slot) current.receive(message);
  });
  const drain = drainSupervisor;
  // A job's 'done' waits until the thread knows what comes next, to carry the next job's 'started'.
  let done: BatchDoneMessage | undefined;
  let slot = 0;
  try {
    for (; ; slot++) {
      // Jobs fed while the last one ran (a synchronous handler gives the port no turn).
      if (slot >= batch.length) drain();
      if (slot >= batch.length) break;
      // An error no job owns: leave the rest for another thread (they have not started).
      if (exitPending) break;
      if (Atomics.compareExchange(flags, slot, 0, SLOT_STARTED) !== 0) continue;
      const started = startedMessage(batch[slot]!, task.task, slot);
      if (done !== undefined && started.loading === undefined) {
        done.next = slot;
        postDone(port, done);
      } else {
        if (done !== undefined) postDone(port, done);
        port.postMessage(started);
      }
      done = undefined;
      const job = new JobScope(batch[slot]!, { port, task: task.task, flags, slot, drain });
      current = job;
      let result: TaskResult;
      try {
        result = await jobs.run(job, () => job.execute(false));
      } catch (err) {
        result = { ok: false, error: serializeThrown(err, 'thread', 'the worker thread threw a non-Error value') };
      } finally {
        job.close();
        current = undefined;
      }
      done = { type: 'done', task: task.task, slot, result, threadId };
    }
  } finally {
    if (done !== undefined) postDone(port, done);
    closeTask();
    if (exitPending) exitWhenIdle();
  }
  return { skipped: batch.length - slot };
}

/** Posts a job's end; an output that cannot be cloned fails the job instead, as structuredClone would have. */
function postDone(port: MessagePort, done: BatchDoneMessage): void {
  try {
    port.postMessage(done);
  } catch (err) {
    const { abortedBy } = done.result;
    done.result = done.result.ok
      ? cloneFailure(err, done.result.runMs)
      : { ok: false, error: { name: 'DataCloneError', message: 'the job error cannot be cloned', phase: 'clone' } };
    if (abortedBy !== undefined) done.result.abortedBy = abortedBy;
    port.postMessage(done);
  }
}
