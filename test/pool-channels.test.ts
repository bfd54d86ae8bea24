/**
 * The pool's side of its threads' channels, over real MessageChannels: messages
 * reach the owner of the task they name, in order; a drain for one task leaves
 * the thread's next task's messages until after the caller has ended the first;
 * and a task's result that comes before its thread's channel waits for it
 * (Piscina's port and the thread's parentPort are read in no fixed order), so
 * nothing the thread posted before its result is missed.
 */
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { ThreadChannels } from '../src/pool/channels.ts';
import type { ThreadMessage } from '../src/pool/protocol.ts';

function recorder(): { seen: ThreadMessage[]; onThreadMessage(message: ThreadMessage): void } {
  const seen: ThreadMessage[] = [];
  return { seen, onThreadMessage: (message) => seen.push(message) };
}

describe('ThreadChannels', () => {
  it("drains a task's messages now, and the next task's after the caller is done, in order", async () => {
    const channels = new ThreadChannels();
    const { port1: thread, port2 } = new MessageChannel();
    channels.adopt({ type: 'spindle:port', threadId: 7, port: port2 });
    const order: string[] = [];
    const owner = (name: string) => ({ onThreadMessage: (m: ThreadMessage) => order.push(`${name} ${m.type}`) });
    const a = channels.open(owner('a'));
    const b = channels.open(owner('b'));
    thread.postMessage({ type: 'started', task: a, threadId: 7 });
    thread.postMessage({ type: 'progress', task: a, percent: 50 });
    // The thread has taken its next task before the pool has read a's result.
    thread.postMessage({ type: 'started', task: b, threadId: 7 });
    channels.drain(7, a);
    order.push('a settled');
    await Promise.resolve();
    thread.postMessage({ type: 'log', task: b, line: 'later' });
    channels.drain(7, b);
    expect(order).toEqual(['a started', 'a progress', 'a settled', 'b started', 'b log']);
    channels.close(b);
    thread.postMessage({ type: 'log', task: b, line: 'after close: dropped' });
    channels.drain(7, a);
    await Promise.resolve();
    expect(order).toHaveLength(5);
    channels.closeAll();
    thread.close();
  });

  it('runs work for a thread whose channel has not come yet once it comes, with everything posted before it', async () => {
    const channels = new ThreadChannels();
    const { port1: thread, port2 } = new MessageChannel();
    const owner = recorder();
    const task = channels.open(owner);
    thread.postMessage({ type: 'started', task, threadId: 9 });
    thread.postMessage({ type: 'done', task, slot: 0, threadId: 9, result: { ok: true, output: 1 } });
    let seenAtResult: string[] | undefined;
    channels.whenReady(9, () => {
      channels.drain(9, task);
      seenAtResult = owner.seen.map((m) => m.type);
    });
    expect(seenAtResult).toBeUndefined();
    channels.adopt({ type: 'spindle:port', threadId: 9, port: port2 });
    expect(seenAtResult).toEqual(['started', 'done']);
    // No thread took the task: nothing to wait for.
    let ran = false;
    channels.whenReady(0, () => (ran = true));
    expect(ran).toBe(true);
    channels.closeAll();
    thread.close();
  });

  it('keeps a dead thread channel readable for the rejection that drains it', async () => {
    const channels = new ThreadChannels();
    const { port1: thread, port2 } = new MessageChannel();
    channels.adopt({ type: 'spindle:port', threadId: 11, port: port2 });
    const owner = recorder();
    const task = channels.open(owner);
    thread.postMessage({ type: 'started', task, threadId: 11 });
    thread.close();
    channels.forget(11);
    await Promise.resolve();
    channels.drain(11, task);
    expect(owner.seen.map((m) => m.type)).toEqual(['started']);
    channels.closeAll();
  });
});
