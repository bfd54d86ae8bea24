import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Actor, assertNever, type AskOptions } from '../src/actors/kernel.ts';
import type { ActorEvents } from '../src/actors/snapshot.ts';
import type { SpawnOptions } from '../src/actors/supervision.ts';
import { ActorCrashError, StateError, TimeoutError, ValidationError } from '../src/errors.ts';
import type { Logger } from '../src/logger.ts';

// A pino logger must fit the Logger actors take (checked by tsc).
const silentLogger: Logger = pino({ enabled: false });

type TestMsg =
  | { type: 'work'; id: number; delayMs: number }
  | { type: 'get' }
  | { type: 'boom'; message: string }
  | { type: 'wait'; gate: Promise<void> }
  | { type: 'tick' };

/** Records what it handles; `hooks` lets a test observe the lifecycle and spawn children. */
class Recorder extends Actor<TestMsg, { seen: number; ticks: number }> {
  seen: number[] = [];
  ticks = 0;
  active = 0;
  maxActive = 0;
  starts = 0;
  stops = 0;

  constructor(
    name: string,
    private readonly hooks: {
      onStart?: (self: Recorder) => void;
      onStop?: (self: Recorder) => void;
      children?: () => Array<[Recorder, SpawnOptions]>;
    } = {},
  ) {
    super({ name, logger: silentLogger });
  }

  protected override onStart(): void {
    this.starts++;
    this.hooks.onStart?.(this);
    for (const [child, options] of this.hooks.children?.() ?? []) this.spawn(child, options);
  }

  protected override onStop(): void {
    this.stops++;
    this.hooks.onStop?.(this);
  }

  protected override inspect(): { seen: number; ticks: number } {
    return { seen: this.seen.length, ticks: this.ticks };
  }

  /** Lets tests reach the protected timer API. */
  tickEvery(ms: number): void {
    this.every(ms, () => ({ type: 'tick' }));
  }

  protected async handle(msg: TestMsg): Promise<unknown> {
    switch (msg.type) {
      case 'work':
        this.active++;
        this.maxActive = Math.max(this.maxActive, this.active);
        await sleep(msg.delayMs);
        this.seen.push(msg.id);
        this.active--;
        return msg.id;
      case 'get':
        return [...this.seen];
      case 'boom':
        throw new Error(msg.message);
      case 'wait':
        await msg.gate;
        return 'released';
      case 'tick':
        this.ticks++;
        return undefined;
      default:
        return assertNever(msg);
    }
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Resolves with the next `event` on `actor` whose payload matches `match`. */
function next<K extends keyof ActorEvents>(
  actor: Recorder,
  event: K,
  match: (payload: ActorEvents[K][0]) => boolean = () => true,
): Promise<ActorEvents[K][0]> {
  return new Promise((resolve) => {
    const listener = (payload: ActorEvents[K][0]): void => {
      if (!match(payload)) return;
      (actor.off as (e: K, l: typeof listener) => void).call(actor, event, listener);
      resolve(payload);
    };
    (actor.on as (e: K, l: typeof listener) => void).call(actor, event, listener);
  });
}

/** Collects every event of `actor` (including its descendants') as `event path`. */
function record(actor: Recorder): string[] {
  const seen: string[] = [];
  for (const event of ['actor:start', 'actor:crash', 'actor:restart', 'actor:fail', 'actor:stop'] as const) {
    actor.on(event, (payload: { path: string }) => seen.push(`${event} ${payload.path}`));
  }
  return seen;
}

// Tests wait for events; a missing event should fail fast, not after the global 30 s.
vi.setConfig({ testTimeout: 2_000 });

const ask = { timeoutMs: 1_000 } satisfies AskOptions;
const live: Recorder[] = [];

function track(actor: Recorder): Recorder {
  live.push(actor);
  return actor;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(live.splice(0).map((actor) => actor.stop()));
});

describe('mailbox', () => {
  it('handles messages one at a time, in the order sent', async () => {
    const actor = track(new Recorder('serial'));
    await actor.start();
    // Earlier messages take longer: an actor that overlapped handlers would finish them out of order.
    for (let id = 0; id < 8; id++) actor.send({ type: 'work', id, delayMs: 8 - id });
    expect(await actor.ask({ type: 'get' }, ask)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(actor.maxActive).toBe(1);
  });

  it('queues messages sent before start and handles them after', async () => {
    const actor = track(new Recorder('early'));
    expect(actor.send({ type: 'work', id: 1, delayMs: 0 })).toBe(true);
    const reply = actor.ask<number[]>({ type: 'get' }, ask);
    expect(actor.snapshot()).toMatchObject({ status: 'idle', mailbox: 2, processed: 0 });
    await actor.start();
    expect(await reply).toEqual([1]);
  });
});

describe('ask', () => {
  it("resolves with the handler's return value", async () => {
    const actor = track(new Recorder('asker'));
    await actor.start();
    expect(await actor.ask<number>({ type: 'work', id: 42, delayMs: 0 }, ask)).toBe(42);
  });

  it('rejects with TimeoutError when the handler is too slow', async () => {
    const actor = track(new Recorder('slow'));
    await actor.start();
    const blocker = gate();
    const started = Date.now();
    await expect(actor.ask({ type: 'wait', gate: blocker.promise }, { timeoutMs: 20 })).rejects.toThrow(TimeoutError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
    blocker.open();
    // The actor is still healthy and the timed-out message was still handled.
    expect(await actor.ask({ type: 'get' }, ask)).toEqual([]);
    expect(actor.snapshot().processed).toBe(2);
  });

  it('requires a timeout', async () => {
    const actor = track(new Recorder('strict'));
    await actor.start();
    await expect(actor.ask({ type: 'get' }, {} as AskOptions)).rejects.toThrow(ValidationError);
    await expect(actor.ask({ type: 'get' }, undefined as unknown as AskOptions)).rejects.toThrow(/timeoutMs/);
    await expect(actor.ask({ type: 'get' }, { timeoutMs: 0 })).rejects.toThrow(ValidationError);
  });

  it("rejects with the handler's error", async () => {
    const actor = track(new Recorder('thrower'));
    await actor.start();
    await expect(actor.ask({ type: 'boom', message: 'bad input' }, ask)).rejects.toThrow('bad input');
  });

  it('rejects when the actor is stopped, and stop rejects the queued asks', async () => {
    const actor = track(new Recorder('stopper'));
    await actor.start();
    const blocker = gate();
    const inFlight = actor.ask({ type: 'wait', gate: blocker.promise }, ask);
    const queued = actor.ask({ type: 'get' }, ask);
    let stopped = false;
    const stopping = actor.stop().then(() => {
      stopped = true;
    });
    await expect(queued).rejects.toThrow(StateError);
    expect(actor.status).toBe('stopping');
    // stop waits for the message in progress, not for the backlog: a few turns of the event loop change nothing.
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    blocker.open();
    await stopping;
    expect(await inFlight).toBe('released');
    await expect(actor.ask({ type: 'get' }, ask)).rejects.toThrow(StateError);
    expect(actor.snapshot()).toMatchObject({ status: 'stopped', processed: 1, dropped: 2, mailbox: 0 });
  });
});

describe('lifecycle', () => {
  it('start and stop are idempotent', async () => {
    const actor = track(new Recorder('idem'));
    const events = record(actor);
    await Promise.all([actor.start(), actor.start()]);
    await actor.start();
    expect(actor.status).toBe('running');
    await Promise.all([actor.stop(), actor.stop()]);
    await actor.stop();
    expect(actor.status).toBe('stopped');
    expect([actor.starts, actor.stops]).toEqual([1, 1]);
    expect(events).toEqual(['actor:start idem', 'actor:stop idem']);
    // A stopped actor can be started again.
    await actor.start();
    expect([actor.starts, actor.status]).toEqual([2, 'running']);
  });

  it('drops messages sent after stop and counts them', async () => {
    const actor = track(new Recorder('dropper'));
    await actor.start();
    await actor.stop();
    expect(actor.send({ type: 'work', id: 1, delayMs: 0 })).toBe(false);
    expect(actor.send({ type: 'tick' })).toBe(false);
    expect(actor.snapshot()).toMatchObject({ status: 'stopped', dropped: 2, processed: 0, mailbox: 0 });
    expect(actor.seen).toEqual([]);
  });

  it('stops children in reverse start order, then itself', async () => {
    const order: string[] = [];
    const onStop = (self: Recorder): void => {
      order.push(self.path);
    };
    const root = track(
      new Recorder('root', {
        onStop,
        children: () => [
          [new Recorder('a', { onStop }), { policy: 'restart' }],
          [new Recorder('b', { onStop }), { policy: 'restart' }],
          [new Recorder('c', { onStop }), { policy: 'restart' }],
        ],
      }),
    );
    const events = record(root);
    await root.start();
    expect(root.snapshot().children.map((c) => [c.path, c.status])).toEqual([
      ['root/a', 'running'],
      ['root/b', 'running'],
      ['root/c', 'running'],
    ]);
    await root.stop();
    expect(order).toEqual(['root/c', 'root/b', 'root/a', 'root']);
    expect(events.filter((e) => e.startsWith('actor:stop'))).toEqual([
      'actor:stop root/c',
      'actor:stop root/b',
      'actor:stop root/a',
      'actor:stop root',
    ]);
  });

  it('a root whose onStart throws rejects start and fails', async () => {
    const actor = track(
      new Recorder('broken', {
        onStart: () => {
          throw new Error('no database');
        },
      }),
    );
    const failed = next(actor, 'actor:fail');
    await expect(actor.start()).rejects.toThrow('no database');
    expect(await failed).toMatchObject({ path: 'broken', reason: 'unsupervised' });
    expect(actor.snapshot()).toMatchObject({ status: 'failed', lastError: { message: 'no database' } });
  });
});

describe('snapshot', () => {
  it('is a JSON-safe view with status, counts and state', async () => {
    const actor = track(new Recorder('snap'));
    await actor.start();
    await actor.ask({ type: 'work', id: 1, delayMs: 0 }, ask);
    const blocker = gate();
    const waiting = actor.ask({ type: 'wait', gate: blocker.promise }, ask);
    actor.send({ type: 'work', id: 2, delayMs: 0 });
    const snapshot = actor.snapshot();
    expect(snapshot).toEqual({
      name: 'snap',
      path: 'snap',
      status: 'running',
      mailbox: 1,
      processed: 1,
      dropped: 0,
      restarts: 0,
      lastError: null,
      state: { seen: 1, ticks: 0 },
      children: [],
    });
    expect(JSON.parse(JSON.stringify(snapshot))).toEqual(snapshot);
    blocker.open();
    await waiting;
  });
});

describe('supervision', () => {
  it('restarts a crashed child with doubling backoff; the child keeps its mailbox and goes on', async () => {
    const child = new Recorder('worker');
    const parent = track(new Recorder('parent', { children: () => [[child, { policy: 'restart', backoffMs: 30 }]] }));
    await parent.start();

    const crashed = next(parent, 'actor:crash');
    const restarted = next(parent, 'actor:restart');
    // Read before the crash, so before the restart's backoff starts, however late this thread runs.
    const crashAt = performance.now();
    child.send({ type: 'boom', message: 'first' });
    const crash = await crashed;
    expect(crash).toMatchObject({ path: 'parent/worker', action: 'restart' });
    expect(crash.error.message).toBe('first');
    // Sent while restarting: kept, and handled after the restart.
    expect(child.send({ type: 'work', id: 7, delayMs: 0 })).toBe(true);
    expect(child.status).toBe('restarting');
    const restart = await restarted;
    expect(performance.now() - crashAt).toBeGreaterThanOrEqual(25);
    expect(restart).toMatchObject({ path: 'parent/worker', restarts: 1, delayMs: 30 });
    expect(await child.ask({ type: 'get' }, ask)).toEqual([7]);
    expect(child.starts).toBe(2);
    expect(child.stops).toBe(1);

    const restartedAgain = next(parent, 'actor:restart');
    child.send({ type: 'boom', message: 'second' });
    expect(await restartedAgain).toMatchObject({ restarts: 2, delayMs: 60 });
    expect(parent.snapshot().children[0]).toMatchObject({
      path: 'parent/worker',
      status: 'running',
      restarts: 2,
      lastError: { message: 'second' },
    });
    expect(parent.status).toBe('running');
  });

  it('restarts a child whose onStart throws', async () => {
    let attempts = 0;
    const child = new Recorder('flaky', {
      onStart: () => {
        if (++attempts === 1) throw new Error('not yet');
      },
    });
    const parent = track(new Recorder('parent', { children: () => [[child, { policy: 'restart', backoffMs: 5 }]] }));
    const restarted = next(parent, 'actor:restart');
    await parent.start();
    expect(await restarted).toMatchObject({ path: 'parent/flaky', restarts: 1 });
    expect(await child.ask<number>({ type: 'work', id: 3, delayMs: 0 }, ask)).toBe(3);
    // onStop is owed only for an onStart that completed.
    expect(child.stops).toBe(0);
  });

  it('gives up after maxRestarts within the window', async () => {
    const child = new Recorder('doomed');
    const parent = track(
      new Recorder('parent', { children: () => [[child, { policy: 'restart', maxRestarts: 2, backoffMs: 1 }]] }),
    );
    const events = record(parent);
    await parent.start();
    for (let i = 0; i < 2; i++) {
      const restarted = next(parent, 'actor:restart');
      child.send({ type: 'boom', message: `crash ${i}` });
      await restarted;
    }
    const failed = next(parent, 'actor:fail');
    child.send({ type: 'boom', message: 'crash 2' });
    expect(await failed).toMatchObject({ path: 'parent/doomed', reason: 'max-restarts' });
    expect(child.snapshot()).toMatchObject({ status: 'failed', restarts: 2 });
    expect(child.send({ type: 'tick' })).toBe(false);
    expect(events.filter((e) => e.startsWith('actor:crash'))).toHaveLength(3);
    expect(parent.status).toBe('running');
  });

  it('policy stop: the child fails, the parent carries on', async () => {
    const child = new Recorder('once');
    const parent = track(new Recorder('parent', { children: () => [[child, { policy: 'stop' }]] }));
    await parent.start();
    const failed = next(parent, 'actor:fail');
    const stopped = next(parent, 'actor:stop');
    child.send({ type: 'boom', message: 'gone' });
    child.send({ type: 'work', id: 1, delayMs: 0 });
    expect(await failed).toMatchObject({ path: 'parent/once', reason: 'policy' });
    expect(await stopped).toMatchObject({ path: 'parent/once', status: 'failed' });
    expect(child.snapshot()).toMatchObject({ status: 'failed', restarts: 0, dropped: 1, processed: 1 });
    expect(child.seen).toEqual([]);
    expect(child.stops).toBe(1);
    expect(await parent.ask<number>({ type: 'work', id: 9, delayMs: 0 }, ask)).toBe(9);
    expect(parent.snapshot().children.map((c) => c.status)).toEqual(['failed']);
  });

  it('policy escalate: the parent crashes and its own parent restarts it with fresh children', async () => {
    const leaves: Recorder[] = [];
    const middle = new Recorder('middle', {
      children: () => {
        const leaf = new Recorder('leaf');
        leaves.push(leaf);
        return [[leaf, { policy: 'escalate' }]];
      },
    });
    const root = track(new Recorder('root', { children: () => [[middle, { policy: 'restart', backoffMs: 5 }]] }));
    const events = record(root);
    await root.start();

    const middleCrashed = next(root, 'actor:crash', (e) => e.path === 'root/middle');
    const middleRestarted = next(root, 'actor:restart', (e) => e.path === 'root/middle');
    leaves[0]!.send({ type: 'boom', message: 'leaf broke' });
    const crash = await middleCrashed;
    expect(crash.action).toBe('restart');
    expect(crash.error).toBeInstanceOf(ActorCrashError);
    expect(crash.error.message).toBe('actor "root/middle/leaf" crashed: leaf broke');
    await middleRestarted;

    expect(events).toEqual([
      'actor:start root/middle/leaf',
      'actor:start root/middle',
      'actor:start root',
      'actor:crash root/middle/leaf',
      'actor:fail root/middle/leaf',
      'actor:stop root/middle/leaf',
      'actor:crash root/middle',
      'actor:start root/middle/leaf',
      'actor:restart root/middle',
    ]);
    expect(leaves).toHaveLength(2);
    expect(leaves[0]!.status).toBe('failed');
    expect(await leaves[1]!.ask<number>({ type: 'work', id: 5, delayMs: 0 }, ask)).toBe(5);
    expect(root.snapshot().children[0]).toMatchObject({
      path: 'root/middle',
      status: 'running',
      restarts: 1,
      children: [{ path: 'root/middle/leaf', status: 'running', restarts: 0 }],
    });
  });

  it('a root that a child escalates to fails and stops everything, without throwing', async () => {
    const child = new Recorder('leaf');
    const root = track(new Recorder('root', { children: () => [[child, { policy: 'escalate' }]] }));
    await root.start();
    const rootFailed = next(root, 'actor:fail', (e) => e.path === 'root');
    const rootStopped = next(root, 'actor:stop', (e) => e.path === 'root');
    child.send({ type: 'boom', message: 'fatal' });
    const failure = await rootFailed;
    expect(failure.reason).toBe('unsupervised');
    expect(failure.error).toBeInstanceOf(ActorCrashError);
    expect(await rootStopped).toMatchObject({ status: 'failed' });
    expect(root.status).toBe('failed');
    expect(child.status).toBe('failed');
    expect(root.stops).toBe(1);
    expect(root.send({ type: 'tick' })).toBe(false);
  });

  it('rejects bad spawn options', async () => {
    const actor = track(
      new Recorder('parent', {
        children: () => [[new Recorder('x'), { policy: 'sometimes' as 'stop' }]],
      }),
    );
    await expect(actor.start()).rejects.toThrow(ValidationError);
  });
});

describe('timers', () => {
  it('every() sends to self until stop, then never again', async () => {
    vi.useFakeTimers();
    const actor = track(new Recorder('ticker', { onStart: (self) => self.tickEvery(100) }));
    await actor.start();
    await vi.advanceTimersByTimeAsync(350);
    expect(actor.ticks).toBe(3);
    await actor.stop();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(actor.ticks).toBe(3);
  });

  it('ticks do not pile up behind a slow handler', async () => {
    vi.useFakeTimers();
    const actor = track(new Recorder('busy', { onStart: (self) => self.tickEvery(10) }));
    await actor.start();
    const blocker = gate();
    const waiting = actor.ask({ type: 'wait', gate: blocker.promise }, { timeoutMs: 10_000 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(actor.snapshot().mailbox).toBe(1);
    blocker.open();
    await waiting;
    await vi.advanceTimersByTimeAsync(10);
    await actor.ask({ type: 'get' }, { timeoutMs: 10_000 });
    expect(actor.ticks).toBe(2);
  });

  it('a restart clears the timers of the crashed run', async () => {
    vi.useFakeTimers();
    const child = new Recorder('periodic', { onStart: (self) => self.tickEvery(100) });
    const parent = track(new Recorder('parent', { children: () => [[child, { policy: 'restart', backoffMs: 50 }]] }));
    await parent.start();
    let restarted = false;
    parent.once('actor:restart', () => {
      restarted = true;
    });
    child.send({ type: 'boom', message: 'tick failed' });
    for (let i = 0; i < 20 && !restarted; i++) await vi.advanceTimersByTimeAsync(10);
    expect(restarted).toBe(true);
    // One interval, not two: the crashed run's interval is gone.
    expect(vi.getTimerCount()).toBe(1);
    const before = child.ticks;
    await vi.advanceTimersByTimeAsync(300);
    expect(child.ticks - before).toBe(3);
  });
});
