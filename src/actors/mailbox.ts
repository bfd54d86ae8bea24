/**
 * An actor's mailbox: a FIFO the actor drains one message at a time. A message the actor cannot
 * take (stopping, stopped or failed) is dropped: counted, and its `ask` rejected at once, so no
 * caller waits for a reply that will not come.
 */

/** A timer of the actor's own (timers.ts); `pending` while a tick of it waits in the mailbox, so `every` does not queue another. */
export interface TimerEntry {
  handle: ReturnType<typeof setTimeout> | undefined;
  pending: boolean;
}

/** A message as it waits: where its reply goes (an `ask`), or the timer that sent it. */
export interface Envelope<Msg> {
  msg: Msg;
  reply?: { resolve(value: unknown): void; reject(error: Error): void };
  timer?: TimerEntry;
}

/** The FIFO of one actor, kept across its restarts. */
export class Mailbox<Msg> {
  readonly #queue: Envelope<Msg>[] = [];
  #dropped = 0;

  /** Messages waiting. */
  get size(): number {
    return this.#queue.length;
  }

  /** Messages dropped over the actor's whole life. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Queues a message behind the others. */
  put(envelope: Envelope<Msg>): void {
    this.#queue.push(envelope);
  }

  /** The oldest message, taken out; its timer may queue the next tick. */
  take(): Envelope<Msg> | undefined {
    const envelope = this.#queue.shift();
    if (envelope?.timer) envelope.timer.pending = false;
    return envelope;
  }

  /** Takes every waiting message out, oldest first. */
  takeAll(): Envelope<Msg>[] {
    return this.#queue.splice(0);
  }

  /** Counts `envelope` as dropped, lets its timer tick again, and rejects its `ask` with `error`. */
  drop(envelope: Envelope<Msg>, error: Error): void {
    this.#dropped++;
    if (envelope.timer) envelope.timer.pending = false;
    envelope.reply?.reject(error);
  }
}
