/**
 * Cron expressions: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
 * Each field takes `*`, numbers, lists (`1,5`), ranges (`1-5`) and steps (`*\/15`, `10-40/5`);
 * day-of-week 0-7 (0 and 7 are Sunday). When both day fields are restricted, a day matching either
 * one matches (as in Vixie cron). Times are wall-clock times in an IANA time zone (default UTC),
 * read through Intl.DateTimeFormat: a wall time skipped by a DST change does not fire, a repeated
 * one fires once per instant it occurs.
 */
import { ValidationError } from '../errors.ts';

/** A parsed cron expression. */
export interface CronSchedule {
  /** The expression as written. */
  source: string;
  /** True when it has a seconds field. */
  seconds: boolean;
  /** IANA zone of its wall-clock times. */
  timezone: string;
  second: Set<number>;
  minute: Set<number>;
  hour: Set<number>;
  dayOfMonth: Set<number>;
  month: Set<number>;
  dayOfWeek: Set<number>;
  /** The day fields were written as `*`. */
  anyDayOfMonth: boolean;
  anyDayOfWeek: boolean;
}

const FIELDS = [
  { name: 'second', min: 0, max: 59 },
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day-of-week', min: 0, max: 7 },
] as const;

/** How far ahead nextTick() looks before deciding that an expression never fires (Feb 30). */
const SEARCH_LIMIT_MS = 5 * 366 * 24 * 3_600_000;

/** Parses a cron expression; throws ValidationError naming the bad field. */
export function parseCron(expression: string, timezone = 'UTC'): CronSchedule {
  if (typeof expression !== 'string') throw new ValidationError('schedule', 'must be a cron expression string');
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) {
    throw new ValidationError('schedule', `must have 5 fields (or 6 with seconds), got ${parts.length} in "${expression}"`);
  }
  checkTimezone(timezone);
  const withSeconds = parts.length === 6 ? parts : ['0', ...parts];
  const sets = withSeconds.map((text, i) => parseField(text, FIELDS[i]!, expression));
  const dayOfWeek = sets[5]!;
  if (dayOfWeek.delete(7)) dayOfWeek.add(0);
  return {
    source: expression,
    seconds: parts.length === 6,
    timezone,
    second: sets[0]!,
    minute: sets[1]!,
    hour: sets[2]!,
    dayOfMonth: sets[3]!,
    month: sets[4]!,
    dayOfWeek,
    anyDayOfMonth: withSeconds[3] === '*',
    anyDayOfWeek: withSeconds[5] === '*',
  };
}

function parseField(text: string, field: (typeof FIELDS)[number], expression: string): Set<number> {
  const bad = (why: string) => new ValidationError('schedule', `${field.name} field "${text}" of "${expression}" ${why}`);
  const out = new Set<number>();
  for (const item of text.split(',')) {
    const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(item);
    if (!match) throw bad('is not *, a number, a range or a step');
    let from: number = field.min;
    let to: number = field.max;
    if (match[1] !== '*') {
      from = Number(match[2]);
      to = match[3] === undefined ? (match[4] === undefined ? from : field.max) : Number(match[3]);
    }
    const step = match[4] === undefined ? 1 : Number(match[4]);
    if (from < field.min || to > field.max || from > to) throw bad(`must be within ${field.min}-${field.max}`);
    if (step < 1) throw bad('has a step below 1');
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

/** Throws ValidationError unless `timezone` is an IANA zone this runtime knows. */
export function checkTimezone(timezone: string): void {
  try {
    formatter(timezone);
  } catch {
    throw new ValidationError('timezone', `must be an IANA time zone such as "Europe/Paris", got ${JSON.stringify(timezone)}`);
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      weekday: 'short',
    });
    formatters.set(timezone, f);
  }
  return f;
}

const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

interface WallTime {
  month: number;
  day: number;
  weekday: number;
  hour: number;
  minute: number;
  second: number;
}

function wallTime(ms: number, timezone: string): WallTime {
  const t: Record<string, string> = {};
  for (const part of formatter(timezone).formatToParts(ms)) t[part.type] = part.value;
  return {
    month: Number(t.month),
    day: Number(t.day),
    weekday: WEEKDAYS[t.weekday!] ?? 0,
    hour: Number(t.hour) % 24,
    minute: Number(t.minute),
    second: Number(t.second),
  };
}

function dayMatches(s: CronSchedule, w: WallTime): boolean {
  const dom = s.dayOfMonth.has(w.day);
  const dow = s.dayOfWeek.has(w.weekday);
  if (s.anyDayOfMonth && s.anyDayOfWeek) return true;
  if (s.anyDayOfMonth) return dow;
  if (s.anyDayOfWeek) return dom;
  return dom || dow;
}

/** The first tick strictly after `afterMs` (epoch ms), as epoch ms; throws if none within 5 years. */
export function nextTick(s: CronSchedule, afterMs: number): number {
  // Start at the next whole second; every candidate below stays on whole seconds.
  let t = Math.floor(afterMs / 1_000) * 1_000 + 1_000;
  const limit = afterMs + SEARCH_LIMIT_MS;
  while (t <= limit) {
    const w = wallTime(t, s.timezone);
    // Skip ahead by the largest unit that cannot match; each jump lands at or before the next
    // match, and the loop reads the wall clock again, so DST shifts only cost an iteration.
    if (!s.month.has(w.month) || !dayMatches(s, w)) {
      t += ((23 - w.hour) * 3_600 + (59 - w.minute) * 60 + (60 - w.second)) * 1_000;
    } else if (!s.hour.has(w.hour)) {
      t += ((59 - w.minute) * 60 + (60 - w.second)) * 1_000;
    } else if (!s.minute.has(w.minute)) {
      t += (60 - w.second) * 1_000;
    } else if (!s.second.has(w.second)) {
      t += 1_000;
    } else {
      return t;
    }
  }
  throw new ValidationError('schedule', `"${s.source}" never fires`);
}

/** The ticks in (fromMs, toMs], oldest first, at most `limit` (the newest ones when there are more); `skipped` counts the rest. */
export function ticksBetween(s: CronSchedule, fromMs: number, toMs: number, limit: number): { ticks: number[]; skipped: number } {
  const ticks: number[] = [];
  let skipped = 0;
  for (let t = nextTick(s, fromMs); t <= toMs; t = nextTick(s, t)) {
    ticks.push(t);
    if (ticks.length > limit) {
      ticks.shift();
      skipped++;
    }
  }
  return { ticks, skipped };
}
