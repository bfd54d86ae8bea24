/**
 * What the outside sees of an actor: its status, a JSON-safe snapshot of it and its children, and
 * the events it emits. An inspector reads these; it never reaches into an actor.
 */
import type { FailReason, SupervisionPolicy } from './supervision.ts';

/**
 * Where an actor is in its lifecycle:
 * - `idle`: constructed, never started. Messages are queued and run after start.
 * - `starting`: `onStart()` and the start of the children spawned in it are in progress. Messages
 *   are queued.
 * - `running`: draining the mailbox.
 * - `restarting`: crashed; its parent restarts it after a backoff. Messages are queued and the
 *   mailbox survives the restart (only the message that threw is lost).
 * - `stopping`: `stop()` in progress. New messages are dropped.
 * - `stopped`: stopped on request. Messages are dropped; `start()` starts it again.
 * - `failed`: crashed and given up on (policy `stop`, too many restarts, `escalate`, or no
 *   parent). Messages are dropped; `start()` starts it again.
 */
export type ActorStatus = 'idle' | 'starting' | 'running' | 'restarting' | 'stopping' | 'stopped' | 'failed';

/** A JSON-safe view of an actor and its children. */
export interface ActorSnapshot<State = unknown> {
  name: string;
  /** Names from the root down, joined by `/`. */
  path: string;
  status: ActorStatus;
  /** Messages waiting in the mailbox (not counting the one in progress). */
  mailbox: number;
  /** Messages handled (the handler returned or threw). */
  processed: number;
  /** Messages refused or discarded because the actor was stopping, stopped or failed. */
  dropped: number;
  /** Restarts so far, over the actor's whole life. */
  restarts: number;
  /** The last crash; `at` is an ISO timestamp. */
  lastError: { message: string; at: string } | null;
  /** What `inspect()` returns. */
  state: State | null;
  children: ActorSnapshot[];
}

/** Fields common to every actor event. */
export interface ActorEventBase {
  name: string;
  path: string;
  /** ISO timestamp. */
  at: string;
}

/**
 * The events of an actor, also re-emitted by each of its ancestors, so an inspector subscribes to
 * the root only.
 */
export interface ActorEvents {
  /** Started on request (not after a crash; see `actor:restart`). */
  'actor:start': [ActorEventBase];
  /** `handle()` or `onStart()` threw; `action` is what happens next. */
  'actor:crash': [ActorEventBase & { error: Error; action: SupervisionPolicy }];
  /** Running again after a crash; `restarts` counts them, `delayMs` was the backoff. */
  'actor:restart': [ActorEventBase & { restarts: number; delayMs: number }];
  /** Given up on: the actor is now `failed`. */
  'actor:fail': [ActorEventBase & { error: Error; reason: FailReason }];
  /** Halted for good, `stopped` on request or `failed`. */
  'actor:stop': [ActorEventBase & { status: 'stopped' | 'failed' }];
}
