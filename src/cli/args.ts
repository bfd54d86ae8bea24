/** Reading a command's arguments and flags, by its entry in the table of commands. */
import { SpindleError, ValidationError } from '../errors.ts';
import { describe, ISO_DATE_FORMS, parseIsoDate } from '../validate.ts';
import { COMMANDS, COMMON_FLAGS, flagsOf, type CommandName, type FlagSpecs } from './commands.ts';
import { closest } from './suggest.ts';

/** A usage mistake: printed with a pointer to the command's help, exit code 2. */
export class UsageError extends SpindleError {
  override name = 'UsageError';
}

/** The values of a command's flags as parsed: a string, or true for a boolean flag; absent when not given. */
export type FlagValues<F extends FlagSpecs> = {
  [K in keyof F]?: F[K]['type'] extends 'boolean' ? true : string;
};

/** What a command was given. */
export interface Parsed<F extends FlagSpecs> {
  values: FlagValues<F & typeof COMMON_FLAGS>;
  positionals: string[];
}

/** A word that is a negative number is a value, never a flag: no flag starts with '-' and a digit. */
const NEGATIVE_NUMBER = /^-[0-9]/;

/**
 * Parses a command's arguments by its table entry: `--flag value`, `--flag=value`, `--flag` for a
 * boolean, `--` before arguments that start with '-'. Unknown flags, missing values and a wrong
 * number of arguments are usage errors that name the flag (with the closest known one).
 */
export function parse<N extends CommandName>(name: N, args: readonly string[]): Parsed<(typeof COMMANDS)[N]['flags']> {
  const flags = flagsOf(name);
  const values: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === '-h') {
      values.help = true;
    } else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const flag = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spec = Object.hasOwn(flags, flag) ? flags[flag]! : undefined;
      if (spec === undefined) throw unknownFlag(`--${flag}`, name);
      if (spec.type === 'boolean') {
        if (eq >= 0) throw new UsageError(`--${flag} takes no value`);
        values[flag] = true;
      } else if (eq >= 0) {
        values[flag] = arg.slice(eq + 1);
      } else {
        const next = args[i + 1];
        // `--queue --wait` is a forgotten value, not a queue named "--wait"; `--priority -5` is a value.
        if (next === undefined || (next.startsWith('-') && next !== '-' && !NEGATIVE_NUMBER.test(next))) {
          const hint = next === undefined ? '' : `; for a value that starts with '-', write --${flag}=VALUE`;
          throw new UsageError(`--${flag} needs a value (${spec.value ?? 'VALUE'})${hint}`);
        }
        values[flag] = next;
        i++;
      }
    } else if (arg.startsWith('-') && arg !== '-' && !NEGATIVE_NUMBER.test(arg)) {
      throw unknownFlag(arg, name);
    } else {
      positionals.push(arg);
    }
  }
  const spec = COMMANDS[name];
  const [min, max] = spec.positionals;
  if (positionals.length < min) throw new UsageError(`expected ${spec.args}`);
  if (positionals.length > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[max])}${max > 0 ? ` (expected ${spec.args})` : ''}`);
  }
  return { values, positionals } as Parsed<(typeof COMMANDS)[N]['flags']>;
}

/** `unknown flag --stat; did you mean --state?` */
function unknownFlag(flag: string, command: CommandName): UsageError {
  const known = Object.keys(flagsOf(command));
  const guess = closest(flag.replace(/^-+/, ''), known);
  return new UsageError(`unknown flag ${flag}${guess === undefined ? '' : `; did you mean --${guess}?`}`);
}

/** The largest PostgreSQL int, and setTimeout's limit: the bound of priorities and millisecond flags. */
export const INT32_MAX = 2_147_483_647;
/** The largest TCP port. */
export const PORT_MAX = 65_535;

/** The value of a numeric flag: decimal digits with an optional leading minus, within [min, max]. */
export function intFlag(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  // Number() takes '', ' ', '1e3', '0x10', '+3', 'Infinity' and more; a flag takes what it shows. `+ 0` makes -0 0.
  const n = /^-?[0-9]+$/.test(value) ? Number(value) + 0 : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw new UsageError(`--${name} must be a decimal integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return n;
}

/** The value of a date flag: an ISO 8601 date (midnight UTC) or a date-time with its zone (see parseIsoDate). */
export function dateFlag(name: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const date = parseIsoDate(value);
  if (date === undefined) throw new UsageError(`--${name} must be ${ISO_DATE_FORMS}, from year 1 to 9999, got ${describe(value)}`);
  return date;
}

/** A JSON argument (null when absent); `field` names it as the library would (`input`, `payload`). */
export function jsonArgument(field: string, text: string | undefined): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ValidationError(field, `is not valid JSON: ${(error as Error).message}`);
  }
}
