/** How soon a supervisor answers a notice of new jobs (policy/notice-pacing.ts): pure rules. */
import { describe, expect, it } from 'vitest';
import { FIRST_NOTICE_DELAY_MS, FLEET_PACING_FROM, MAX_NOTICE_DELAY_MS, NoticePacing } from '../src/policy/notice-pacing.ts';

const noJitter = () => 0.5;

describe('notice pacing', () => {
  it('answers at once in a fleet smaller than FLEET_PACING_FROM, however many claims came back empty', () => {
    const pacing = new NoticePacing();
    for (let i = 0; i < 20; i++) pacing.claimedNothing();
    expect(pacing.delayMs(FLEET_PACING_FROM - 1, noJitter)).toBe(0);
    expect(pacing.delayMs(1, noJitter)).toBe(0);
  });

  it('in a large fleet, waits after empty claims, doubling to the cap, and answers at once again after a claim that took jobs', () => {
    const pacing = new NoticePacing();
    const fleet = 50;
    expect(pacing.delayMs(fleet, noJitter)).toBe(0);
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      pacing.claimedNothing();
      delays.push(pacing.delayMs(fleet, noJitter));
    }
    expect(delays[0]).toBe(FIRST_NOTICE_DELAY_MS);
    expect(delays[1]).toBe(2 * FIRST_NOTICE_DELAY_MS);
    expect(delays.at(-1)).toBe(MAX_NOTICE_DELAY_MS);
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]!);
    pacing.claimedSome();
    expect(pacing.delayMs(fleet, noJitter)).toBe(0);
  });

  it('spreads the waits with jitter, between half and one and a half times the delay', () => {
    const pacing = new NoticePacing();
    for (let i = 0; i < 10; i++) pacing.claimedNothing();
    expect(pacing.delayMs(50, () => 0)).toBe(MAX_NOTICE_DELAY_MS / 2);
    expect(pacing.delayMs(50, () => 0.999999)).toBe(Math.round(MAX_NOTICE_DELAY_MS * 1.5));
  });
});
