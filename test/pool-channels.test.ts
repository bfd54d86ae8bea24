/**
 * The pool's side of its threads' channels, over real MessageChannels: messages
 * reach the owner of the task they name, in order, and a task's result that
 * comes before its thread's channel waits for it (Piscina's port and the
 * thread's parentPort are read in no fixed order), so nothing the thread
 * posted before its result is missed.
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
  it('drains a thread channel now, each message to the owner of its task, in order', () => {
    const channels = new ThreadChannels();
    const { port1: thread, port2 } = new MessageChannel();
    channels.adopt({ type: 'spindle:port', threadId: 7, port: port2 });
    const first = recorder();
    const second = recorder();
    const a = channels.open(first);
    const b = channels.open(second);
    thread.postMessage({ type: 'started', task: a, threadId: 7 });
    thread.postMessage({ type: 'log', task: b, line: 'other task' });
    thread.postMessage({ type: 'progress', task: a, percent: 50 });
    channels.drain(7);
    channels.close(b);
    thread.postMessage({ type: 'log', task: b, line: 'after close: dropped' });
    channels.drain(7);
    expect(first.seen.map((m) => m.type)).toEqual(['started', 'progress']);
    expect(second.seen).toEqual([{ type: 'log', task: b, line: 'other task' }]);
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
      channels.drain(9);
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
    channels.drain(11);
    expect(owner.seen.map((m) => m.type)).toEqual(['started']);
    channels.closeAll();
  });
});
