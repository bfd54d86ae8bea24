/**
 * `spindle start-workflow NAME [JSON]`, `workflows`, `workflow ID`, `signal RUN EVENT [JSON]`,
 * `cancel-workflow RUN`.
 */
import type { Client } from '../client.ts';
import { NotFoundError, SpindleError } from '../errors.ts';
import { FINAL_WORKFLOW_STATES, type WorkflowRun, type WorkflowState, type WorkflowStep } from '../workflows/client.ts';
import { intFlag, jsonArgument, parse } from './args.ts';
import { withClient } from './connect.ts';
import { brief, duration, print, table } from './format.ts';
import { interruptible } from './interrupt.ts';
import { observe } from './observe.ts';
import { liveSupervisors } from './supervisors.ts';

/** Exit codes of `start-workflow --wait`. */
const EXIT_CODES: Partial<Record<WorkflowState, number>> = { succeeded: 0, failed: 1, compensation_failed: 1, cancelled: 4 };

export async function startWorkflowCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('start-workflow', args);
  const [name, json] = positionals as [string, string | undefined];
  const input = jsonArgument('input', json);
  return withClient(values, async (client) => {
    const { run, created } = await client.startWorkflow(name, input, { id: values.id });
    const what = created
      ? `started workflow run ${run.id} (${run.name})`
      : `workflow run ${run.id} (${run.name}, ${run.state}) exists already: not started again${json === undefined ? '' : ', the JSON input not applied'}`;
    if (!values.wait) print(values.json, { ...run, created }, () => what);
    else if (!values.json) process.stderr.write(`${what}; waiting for it to end\n`);
    // Supervisors do not record which workflows they serve: only "none at all" can be told.
    if (!FINAL_WORKFLOW_STATES.includes(run.state) && (await liveSupervisors(client)).length === 0) {
      const waiting = values.wait ? '; waiting anyway (Ctrl-C stops the wait, not the run)' : '';
      process.stderr.write(`spindle: warning: no supervisor is running: the run waits until one that serves workflow "${run.name}" starts ('spindle start --workflows DIR')${waiting}\n`);
    }
    return values.wait ? waitForRun(client, run.id, values.json) : 0;
  });
}

/** Waits for a run to end, or for Ctrl-C (which leaves the run alone); returns the exit code. */
async function waitForRun(client: Client, id: string, json: boolean | undefined): Promise<number> {
  let last: WorkflowRun | undefined;
  const interruption = interruptible(
    () =>
      `spindle: stopped waiting for workflow run ${id}, which goes on${last ? ` (${last.state})` : ''}: ` +
      `'spindle workflow ${id}' shows it, 'spindle cancel-workflow ${id}' stops it`,
  );
  try {
    for await (const run of observe(client.pool, {
      channels: ['spindle_workflow_finished'],
      relevant: (n) => n.payload === id,
      read: () => client.getWorkflow(id),
      signal: interruption.signal,
    })) {
      last = run;
      if (FINAL_WORKFLOW_STATES.includes(run.state)) break;
    }
  } finally {
    interruption.dispose();
  }
  const interrupted = interruption.exitCode();
  if (interrupted !== undefined) return interrupted;
  if (!last) throw new NotFoundError(`no workflow run ${id}`);
  const run = last;
  if (json) process.stdout.write(`${JSON.stringify(run, null, 2)}\n`);
  else if (run.state === 'succeeded') process.stdout.write(`${JSON.stringify(run.output, null, 2)}\n`);
  else {
    const why = run.error?.message ?? run.cancelReason;
    const how = run.state === 'compensation_failed' ? 'was cancelled, and a compensation failed' : run.state;
    process.stderr.write(`workflow run ${run.id} ${how}${why ? `: ${why}` : ''}\n`);
  }
  return EXIT_CODES[run.state] ?? 1;
}

export async function workflowsCommand(args: string[]): Promise<number> {
  const { values } = parse('workflows', args);
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
  const { values, positionals } = parse('workflow', args);
  return withClient(values, async (client) => {
    const run = await client.getWorkflow(positionals[0]!);
    if (!run) throw new SpindleError(`no workflow run ${positionals[0]}`);
    print(values.json, run, () => describeRun(run, run.steps));
    return 0;
  });
}

export async function signalCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('signal', args);
  const [runId, name, json] = positionals as [string, string, string | undefined];
  const payload = jsonArgument('payload', json);
  return withClient(values, async (client) => {
    await client.sendEvent(runId, name, payload);
    print(values.json, { runId, event: name, sent: true }, () => `event "${name}" sent to workflow run ${runId}`);
    return 0;
  });
}

export async function cancelWorkflowCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('cancel-workflow', args);
  return withClient(values, async (client) => {
    const result = await client.cancelWorkflow(positionals[0]!, values.reason);
    print(values.json, result, () => result.message);
    return 0;
  });
}

/** What a suspended run waits for: `job 7`, `event approved`, `until 2026-...` (a sleep). */
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
    `  created ${run.createdAt.toISOString()}, ${run.resumes} resume${run.resumes === 1 ? '' : 's'}${run.finishedAt ? `, finished ${run.finishedAt.toISOString()}` : ''}`,
    // A sleep reads "sleeping until ...", not "waiting for until ...".
    waitingFor(run) ? `  ${run.waitingFor ? 'waiting for' : 'sleeping'} ${waitingFor(run)}` : '',
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
        s.compensation ? compensationCell(run, s.compensation) : '',
      ]),
    ));
  }
  return lines.join('\n');
}

/** A step's compensation that has not run, by where its run stands. */
function compensationNotRun(state: WorkflowRun['state']): string {
  switch (state) {
    case 'compensating':
      return 'pending';
    case 'succeeded':
    case 'failed':
      return 'not needed';
    case 'cancelled':
    case 'compensation_failed':
      return 'not run';
    default:
      return 'on cancel';
  }
}

/** A step's compensation: not due unless the run is cancelled; else its state and attempts, counted right. */
function compensationCell(run: WorkflowRun, c: NonNullable<WorkflowStep['compensation']>): string {
  if (c.state === 'skipped') return 'skipped';
  if (c.state === null && c.attempts === 0) return compensationNotRun(run.state);
  const attempts = `${c.attempts} attempt${c.attempts === 1 ? '' : 's'}`;
  return `${c.state ?? 'pending'} (${attempts})`;
}
