/**
 * The pool's side of its threads' channels (PortHandoff in protocol.ts): one
 * per thread for the thread's life, where every message about a task names
 * the task. A task's owner (a single job's run, or a batch) opens a task
 * number here and gets the messages that name it; which thread runs the task
 * it learns from the task's thread cell or its 'started' message.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { PortHandoff, SupervisorMessage, ThreadMessage } from './protocol.ts';

/** What gets a task's messages. */
export interface TaskOwner {
  onThreadMessage(message: ThreadMessage): void;
}

/** How long a dead thread's channel stays readable, for the rejection that drains it (a microtask later). */
const DEAD_CHANNEL_KEEP_MS = 1_000;
/** How long work waits for a thread's channel (see whenReady) before it goes on without. */
const CHANNEL_WAIT_MS = 1_000;

export class ThreadChannels {
  readonly #ports = new Map<number, MessagePort>();
  readonly #owners = new Map<number, TaskOwner>();
  /** Messages about later tasks that a drain took off a thread's channel, delivered next (see drain). */
  readonly #held = new Map<number, ThreadMessage[]>();
  /** Work waiting for a thread's channel, which is posted before any task reaches the thread. */
  readonly #waiting = new Map<number, (() => void)[]>();
  #nextTask = 1;

  /** A thread's channel has come (Piscina re-emits it as the pool's 'message' event). */
  adopt(handoff: PortHandoff): void {
    const { threadId, port } = handoff;
    this.#ports.set(threadId, port);
    port.on('message', (message: ThreadMessage) => {
      const held = this.#held.get(threadId);
      if (held === undefined) this.#route(message);
      else held.push(message);
    });
    // Tasks keep the process alive while they run (Piscina); an idle channel must not.
    port.unref();
    const waiting = this.#waiting.get(threadId);
    if (waiting === undefined) return;
    this.#waiting.delete(threadId);
    for (const fn of waiting) fn();
  }

  /** The thread is gone: its channel is closed once whoever must drain it has done so. */
  forget(threadId: number): void {
    const port = this.#ports.get(threadId);
    if (port === undefined) return;
    setTimeout(() => {
      if (this.#ports.get(threadId) !== port) return;
      this.#ports.delete(threadId);
      port.close();
    }, DEAD_CHANNEL_KEEP_MS).unref();
  }

  /** A number for a new task; its messages go to `owner` until close(). */
  open(owner: TaskOwner): number {
    const task = this.#nextTask++;
    this.#owners.set(task, owner);
    return task;
  }

  close(task: number): void {
    this.#owners.delete(task);
  }

  /** Posts to the thread; false if its channel is not here (not come yet, or long dead). Throws what postMessage throws. */
  post(threadId: number, message: SupervisorMessage): boolean {
    const port = this.#ports.get(threadId);
    if (port === undefined) return false;
    port.postMessage(message);
    return true;
  }

  /**
   * Delivers, now, what the thread has posted about `task` so far (thread 0: none took it, nothing). What it posted about other tasks
   * is delivered in order at the next microtask, after the caller is done: a thread may take its
   * next task, and say so, before the pool has read the last one's result (they come on different
   * ports), and the end of one must come before the start of the next. Delivered at once, a pool of
   * two threads briefly counted three jobs running.
   */
  drain(threadId: number, task: number): void {
    const port = this.#ports.get(threadId);
    if (port === undefined) return;
    const later: ThreadMessage[] = [];
    const take = (message: ThreadMessage): void => {
      if (message.task === task) this.#route(message);
      else later.push(message);
    };
    // Held ones first: they were posted first.
    const held = this.#held.get(threadId);
    this.#held.delete(threadId);
    if (held !== undefined) for (const message of held) take(message);
    for (let entry = receiveMessageOnPort(port); entry !== undefined; entry = receiveMessageOnPort(port)) {
      take(entry.message as ThreadMessage);
    }
    if (later.length === 0) return;
    this.#held.set(threadId, later);
    queueMicrotask(() => this.#release(threadId));
  }

  #release(threadId: number): void {
    const held = this.#held.get(threadId);
    if (held === undefined) return;
    this.#held.delete(threadId);
    for (const message of held) this.#route(message);
  }

  /**
   * Runs `fn` once the thread's channel is here: at once nearly always. A task's result comes on
   * Piscina's own port, which the pool may read before the thread's parentPort (where the channel
   * came, earlier): the result must wait, or the messages before it would be missed. After
   * CHANNEL_WAIT_MS it runs anyway. `threadId` 0: no thread took the task, nothing to wait for.
   */
  whenReady(threadId: number, fn: () => void): void {
    if (threadId === 0 || this.#ports.has(threadId)) {
      fn();
      return;
    }
    let done = false;
    const once = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(once, CHANNEL_WAIT_MS);
    let list = this.#waiting.get(threadId);
    if (list === undefined) this.#waiting.set(threadId, (list = []));
    list.push(once);
  }

  closeAll(): void {
    for (const port of this.#ports.values()) port.close();
    this.#ports.clear();
    this.#owners.clear();
    this.#held.clear();
  }

  #route(message: ThreadMessage): void {
    this.#owners.get(message.task)?.onThreadMessage(message);
  }
}
