/** The order of a replay (src/workflows/replay-gate.ts): results handed back as the body first saw them end. */
import { describe, expect, it } from 'vitest';
import { ReplayGate } from '../src/workflows/replay-gate.ts';

const ended = (...seqs: number[]) => seqs.map((seq) => ({ seq, label: `step "s${seq}"` }));

describe('ReplayGate', () => {
  it('hands recorded results back in the order they ended, whatever order the calls come in', async () => {
    const gate = new ReplayGate(ended(2, 1, 3), () => new Error('stuck'));
    const seen: number[] = [];
    const calls = [1, 3, 2].map((seq) => gate.turn(seq, `step "s${seq}"`).then(() => seen.push(seq)));
    await Promise.all(calls);
    expect(seen).toEqual([2, 1, 3]);
    expect(gate.open).toBe(true);
  });

  it('holds a call that was not recorded until every recorded result is handed back', async () => {
    const gate = new ReplayGate(ended(1), () => new Error('stuck'));
    const seen: string[] = [];
    const fresh = gate.pass('step "new"').then(() => seen.push('new'));
    const recorded = gate.turn(1, 'step "s1"').then(() => seen.push('s1'));
    await Promise.all([fresh, recorded]);
    expect(seen).toEqual(['s1', 'new']);
    // Once open, calls pass at once.
    await gate.pass('step "later"');
  });

  it('names the recorded call that is due and the call the body made instead when the body is stuck', async () => {
    const gate = new ReplayGate(ended(1, 2), (due, reached) => new Error(`${due.label} is due, ${reached} came`));
    const early = gate.turn(2, 'step "s2"');
    await expect(early).rejects.toThrow('step "s1" is due, step "s2" came');
    await expect(gate.pass('step "other"')).rejects.toThrow('step "s1" is due');
  });

  it('waits for the body while it makes no call: that is not a mismatch', async () => {
    const gate = new ReplayGate(ended(1), () => new Error('stuck'));
    await new Promise((resolve) => setImmediate(resolve));
    gate.bodySettled();
    await new Promise((resolve) => setImmediate(resolve));
    await gate.turn(1, 'step "s1"');
    expect(gate.open).toBe(true);
  });
});
