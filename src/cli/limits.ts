/** `spindle limits [set|clear SCOPE]`, `pause SCOPE`, `resume SCOPE`: flow control from a shell. */
import type { LimitRow } from '../db/limits.ts';
import { parseScope, rateText, scopeLabel, type FlowLimits, type FlowLimitsUpdate, type RateLimit } from '../limits.ts';
import { describe } from '../validate.ts';
import { intFlag, INT32_MAX, parse, UsageError } from './args.ts';
import { withClient } from './connect.ts';
import { print, table } from './format.ts';

export async function limitsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('limits', args);
  const [action, scopeText] = positionals as [string | undefined, string | undefined];
  if (action === undefined) {
    return withClient(values, async (client) => {
      const rows = await client.limits();
      print(values.json, rows, () => (rows.length ? limitsTable(rows) : 'no limits and no pauses'));
      return 0;
    });
  }
  if (action !== 'set' && action !== 'clear') throw new UsageError(`the first argument must be set or clear, got ${describe(action)}`);
  if (scopeText === undefined) throw new UsageError(`limits ${action} needs a SCOPE: a type (resize) or a queue (queue:emails)`);
  const scope = parseScope('SCOPE', scopeText);
  if (action === 'clear') {
    return withClient(values, async (client) => {
      const cleared = await client.clearLimits(scope);
      print(values.json, { scope, cleared }, () =>
        cleared ? `${scopeLabel(scope)}: the operator's limits are cleared; its module's apply` : `${scopeLabel(scope)} had no operator's limits`,
      );
      return 0;
    });
  }
  const update: FlowLimitsUpdate = {};
  const count = (flag: string, value: string | undefined) => (value === 'none' ? null : intFlag(flag, value, 1, INT32_MAX));
  if (values['global-concurrency'] !== undefined) update.globalConcurrency = count('global-concurrency', values['global-concurrency']);
  if (values['key-concurrency'] !== undefined) update.keyConcurrency = count('key-concurrency', values['key-concurrency']);
  if (values.rate !== undefined) update.rateLimit = rateFlag('rate', values.rate);
  if (values['key-rate'] !== undefined) update.keyRateLimit = rateFlag('key-rate', values['key-rate']);
  if (values.fair !== undefined) {
    if (values.fair !== 'on' && values.fair !== 'off') throw new UsageError(`--fair must be on or off, got ${describe(values.fair)}`);
    update.fair = values.fair === 'on';
  }
  if (Object.keys(update).length === 0) {
    throw new UsageError('limits set needs a limit: --global-concurrency, --key-concurrency, --rate, --key-rate or --fair');
  }
  return withClient(values, async (client) => {
    const row = await client.setLimits(scope, update);
    print(values.json, row, () => `${scopeLabel(scope)}: ${limitsText(row.limits) || 'no limits'}`);
    return 0;
  });
}

export async function pauseCommand(args: string[]): Promise<number> {
  return pauseOrResume('pause', args);
}

export async function resumeCommand(args: string[]): Promise<number> {
  return pauseOrResume('resume', args);
}

async function pauseOrResume(command: 'pause' | 'resume', args: string[]): Promise<number> {
  const { values, positionals } = parse(command, args);
  const scope = parseScope('SCOPE', positionals[0]);
  return withClient(values, async (client) => {
    const changed = command === 'pause' ? await client.pause(scope) : await client.resume(scope);
    const state = command === 'pause' ? 'paused' : 'resumed';
    print(values.json, { scope, paused: command === 'pause', changed }, () =>
      changed
        ? `${scopeLabel(scope)} ${state}${command === 'pause' ? ': no supervisor claims its jobs; running ones finish' : ''}`
        : `${scopeLabel(scope)} was ${command === 'pause' ? 'paused' : 'not paused'} already`,
    );
    return 0;
  });
}

/** `20/1s`, `100/1m`, `5/500ms`, or `none`. */
function rateFlag(flag: string, value: string): RateLimit | null {
  if (value === 'none') return null;
  const m = /^([0-9]+)\/([0-9]+)(ms|s|m)$/.exec(value);
  const unit = { ms: 1, s: 1000, m: 60_000 };
  if (!m) throw new UsageError(`--${flag} must be N/WINDOW (20/1s, 100/1m, 5/500ms) or none, got ${describe(value)}`);
  return { limit: Number(m[1]), intervalMs: Number(m[2]) * unit[m[3] as keyof typeof unit] };
}

/** `at most 3 running; 20 per 1 s` */
export function limitsText(limits: FlowLimits): string {
  const parts: string[] = [];
  if (limits.globalConcurrency !== undefined) parts.push(`at most ${limits.globalConcurrency} running`);
  if (limits.keyConcurrency !== undefined) parts.push(`${limits.keyConcurrency} per key`);
  if (limits.rateLimit) parts.push(rateText(limits.rateLimit));
  if (limits.keyRateLimit) parts.push(`${rateText(limits.keyRateLimit)} per key`);
  if (limits.fair) parts.push('fair by key');
  return parts.join('; ');
}

function limitsTable(rows: LimitRow[]): string {
  return table(
    ['SCOPE', 'LIMITS', 'SET BY', 'RUNNING', 'WAITING', 'STATE'],
    rows.map((r) => [
      `${r.kind}:${r.name}`,
      limitsText(r.limits) || '-',
      Object.keys(r.operator).length ? (Object.keys(r.module).length ? 'operator over module' : 'operator') : 'module',
      r.limits.globalConcurrency === undefined ? r.running : `${r.running}/${r.limits.globalConcurrency}`,
      r.waiting,
      r.paused ? 'paused' : 'claiming',
    ]),
  );
}
