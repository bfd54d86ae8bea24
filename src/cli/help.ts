/** The help of the CLI, written from the table of commands. */
import { COMMANDS, COMMON_FLAGS, type CommandName, type FlagSpecs } from './commands.ts';

/** `spindle --help`: every command with its summary, and the flags they all take. */
export function overallHelp(): string {
  const names = Object.keys(COMMANDS) as CommandName[];
  const width = Math.max(...names.map((n) => n.length));
  return [
    'spindle: a durable job runtime for Node.js on PostgreSQL',
    '',
    'Usage: spindle COMMAND [ARGUMENTS] [FLAGS]',
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${COMMANDS[n].summary}`),
    '',
    'Every command takes:',
    ...flagLines(COMMON_FLAGS),
    '',
    "Run 'spindle COMMAND --help' (or 'spindle help COMMAND') for a command's flags and an example.",
  ].join('\n');
}

/** `spindle CMD --help`: its usage, what it does, its flags and an example. */
export function commandHelp(name: CommandName): string {
  const spec = COMMANDS[name];
  const own: FlagSpecs = spec.flags;
  const lines = [`Usage: spindle ${name}${spec.args ? ` ${spec.args}` : ''} [FLAGS]`, '', `${capitalise(spec.summary)}.`];
  if ('details' in spec) lines.push(capitalise(spec.details));
  if (Object.keys(own).length) lines.push('', 'Flags:', ...flagLines(own, COMMON_FLAGS));
  lines.push('', 'Flags of every command:', ...flagLines(COMMON_FLAGS, own));
  lines.push('', spec.examples.length > 1 ? 'Examples:' : 'Example:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n');
}

/** One line per flag, their descriptions aligned (with those of `alongside`, printed in the same help). */
function flagLines(flags: FlagSpecs, alongside: FlagSpecs = {}): string[] {
  const usage = (name: string, flag: FlagSpecs[string]) =>
    `${name === 'help' ? '-h, ' : ''}--${name}${flag.value ? ` ${flag.value}` : ''}`;
  const width = Math.max(...[...Object.entries(flags), ...Object.entries(alongside)].map(([n, f]) => usage(n, f).length));
  return Object.entries(flags).map(([name, flag]) => `  ${usage(name, flag).padEnd(width)}  ${flag.help}`);
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
