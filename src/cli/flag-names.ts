/**
 * Library errors name the field at fault (`options.runAt must be ...`); a person at a shell typed a
 * flag (`--run-at`). This turns the one into the other, by the `field` of each flag in the table.
 */
import { ValidationError } from '../errors.ts';
import { flagsOf, type CommandName } from './commands.ts';

/**
 * The message of `error` with the library fields of the flags the user gave named as those flags.
 * A field whose flag was not given (its value came from the environment or a default) keeps its name.
 */
export function messageNamingFlags(error: Error, command: CommandName, args: readonly string[]): string {
  const given = new Map<string, string>();
  for (const [name, flag] of Object.entries(flagsOf(command))) {
    if (flag.field !== undefined && args.some((a) => a === `--${name}` || a.startsWith(`--${name}=`))) given.set(flag.field, `--${name}`);
  }
  let message = error.message;
  if (error instanceof ValidationError) {
    // The field comes first; a path below it (`options.queues[2]`) is about that flag too.
    const field = [...given.keys()].find((f) => error.field === f || error.field.startsWith(`${f}[`) || error.field.startsWith(`${f}.`));
    if (field !== undefined) message = `${given.get(field)}${message.slice(error.field.length)}`;
  }
  // Another field named later in the sentence: `cannot be combined with options.delayMs`.
  for (const [field, flag] of given) {
    if (field.includes('.')) message = message.replaceAll(new RegExp(`\\b${field.replaceAll('.', '\\.')}\\b`, 'g'), flag);
  }
  return message;
}
