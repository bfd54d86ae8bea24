/** The benchmark's workflow: `input.steps` no-op steps in a row (scenario 8, bench/scenarios/workflows.ts). */
import type { WorkflowContext } from '../../src/workflows/types.ts';

export const version = '1';

export default async function steps(input: { steps: number }, wf: WorkflowContext): Promise<number> {
  for (let i = 0; i < input.steps; i++) await wf.step(`s${i}`, () => i);
  return input.steps;
}
