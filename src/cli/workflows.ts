/** `spindle workflows`, `spindle workflow ID`, `spindle signal RUN EVENT [JSON]`, `spindle cancel-workflow RUN`. */
import { SpindleError } from '../errors.ts';
import type { WorkflowRun, WorkflowState, WorkflowStep } from '../workflows/client.ts';
import { brief, duration, table } from './format.ts';
import { intFlag, parse, print, UsageError, withClient } from './main.ts';

export async function workflowsCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    { state: { type: 'string' }, name: { type: 'string' }, limit: { type: 'string' } },
    { min: 0, max: 0, names: '' },
  );
  const limit = intFlag('limit', values.limit, 1, 1_000);
  return withClient(values, async (client) => {
    const runs = await client.listWorkflows({ state: values.state as WorkflowState | undefined, name: values.name, limit });
    print(values.json, runs, () =>
      runs.length === 0
        ? 'no workflow runs'
        : table(
            ['ID', 'NAME', 'VERSION', 'STATE', 'STEPS', 'WAITING FOR', 'CREATED', 'DETAIL'],
            runs.map((r) => [r.id, r.name, r.version, r.state, r.stepCount, waitingFor(r), r.createdAt.toISOString(), detail(r)]),
          ),
    );
    return 0;
  });
}

export async function workflowCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {}, { min: 1, max: 1, names: 'ID' });
  return withClient(values, async (client) => {
    const run = await client.getWorkflow(positionals[0]!);
    if (!run) throw new SpindleError(`no workflow run ${positionals[0]}`);
    print(values.json, run, () => describeRun(run, run.steps));
    return 0;
  });
}

export async function signalCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {}, { min: 2, max: 3, names: 'RUN EVENT [JSON]' });
  const [runId, name, json] = positionals as [string, string, string | undefined];
  let payload: unknown = null;
  if (json !== undefined) {
    try {
      payload = JSON.parse(json);
    } catch (error) {
      throw new UsageError(`JSON payload is not valid JSON: ${(error as Error).message}`);
    }
  }
  return withClient(values, async (client) => {
    await client.sendEvent(runId, name, payload);
    print(values.json, { runId, event: name, sent: true }, () => `event "${name}" sent to workflow run ${runId}`);
    return 0;
  });
}

export async function cancelWorkflowCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { reason: { type: 'string' } }, { min: 1, max: 1, names: 'RUN' });
  return withClient(values, async (client) => {
    const result = await client.cancelWorkflow(positionals[0]!, values.reason);
    print(values.json, result, () => result.message);
    return 0;
  });
}

function waitingFor(run: WorkflowRun): string {
  if (!run.waitingFor) return run.state === 'sleeping' && run.wakeAt ? `until ${run.wakeAt.toISOString()}` : '';
  return 'job' in run.waitingFor ? `job ${run.waitingFor.job}` : `event ${run.waitingFor.event}`;
}

function detail(run: WorkflowRun): string {
  if (run.state === 'blocked') return run.blockedReason ?? '';
  return run.error?.message ?? '';
}

function describeRun(run: WorkflowRun, steps: WorkflowStep[]): string {
  const lines = [
    `workflow run ${run.id}  ${run.name}${run.version ? ` v${run.version}` : ''}  [${run.state}]`,
    `  created ${run.createdAt.toISOString()}, ${run.resumes} resumes${run.finishedAt ? `, finished ${run.finishedAt.toISOString()}` : ''}`,
    waitingFor(run) ? `  waiting for ${waitingFor(run)}` : '',
    run.blockedReason ? `  blocked: ${run.blockedReason}` : '',
    run.cancelRequestedAt ? `  cancel requested ${run.cancelRequestedAt.toISOString()}${run.cancelReason ? `: ${run.cancelReason}` : ''}` : '',
    `  input  ${brief(run.input, 200)}`,
    run.output !== null ? `  output ${brief(run.output, 200)}` : '',
    run.error ? `  error  ${run.error.name ?? 'Error'}: ${run.error.message ?? ''}` : '',
  ].filter(Boolean);
  if (steps.length) {
    lines.push('', table(
      ['#', 'KIND', 'NAME', 'STATE', 'TIME', 'RESULT', 'COMPENSATION'],
      steps.map((s) => [
        s.seq,
        s.kind,
        s.name,
        s.state,
        s.finishedAt ? duration(s.finishedAt.getTime() - s.startedAt.getTime()) : '-',
        s.state === 'failed' ? brief(s.error) : s.jobId && s.state === 'waiting' ? `job ${s.jobId}` : brief(s.result),
        s.compensation ? `${s.compensation.state ?? 'pending'} (${s.compensation.attempts} attempts)` : '',
      ]),
    ));
  }
  return lines.join('\n');
}
