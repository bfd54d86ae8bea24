/**
 * What PostgreSQL can store, the one rule for every string and JSON value spindle writes.
 *
 * PostgreSQL refuses U+0000 in text and jsonb, and a lone UTF-16 surrogate in jsonb (a lone one in
 * text is silently replaced). So:
 * - Data (job input and output, progress data, step results, event payloads, workflow input and
 *   output, keys, names, cancel reasons) holding one is refused where it enters, naming the field:
 *   a ValidationError for a caller, a failed job for a handler's output. Nothing is written.
 * - Text for people (error messages and stacks, log lines, progress messages) is escaped instead:
 *   U+0000 becomes the six characters `\u0000` and a lone surrogate `\udXXX`, as JSON.stringify
 *   shows them, so nothing a handler prints can stop a write. It is bounded too.
 */

/** Deepest nesting of arrays and objects accepted in a stored JSON value. */
export const MAX_JSON_DEPTH = 1_000;

/** Characters kept of an error's message, and of its stack, before the cut is marked. */
export const MAX_ERROR_TEXT_CHARS = 64 * 1024;

/** A part of a value that cannot be stored: where it is and why. */
export interface Unstorable {
  path: string;
  problem: string;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_CHARS = new RegExp(`\\u0000|${LONE_SURROGATE.source}`, 'g');

/** Why a string cannot be stored as it is, or undefined when it can. */
export function textProblem(text: string): string | undefined {
  if (text.includes('\u0000')) return 'contains a NUL character (U+0000), which PostgreSQL cannot store';
  const lone = LONE_SURROGATE.exec(text);
  if (lone !== null) {
    const code = lone[0].charCodeAt(0).toString(16).toUpperCase();
    return `contains a lone surrogate (U+${code}, half of a UTF-16 pair), which PostgreSQL cannot store`;
  }
  return undefined;
}

/**
 * The first part of a JSON value that cannot be stored, or undefined when all of it can. What JSON
 * changes silently is refused too (a BigInt, a Map, NaN, a function, a cycle), so a value stored is
 * the value read back. `undefined` object members are left out, as JSON leaves them.
 */
export function findUnstorable(value: unknown, path: string, maxDepth = MAX_JSON_DEPTH): Unstorable | undefined {
  // Iterative, so a value nested 100,000 levels gets an answer, not a stack overflow.
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path, depth: 0 }];
  const open = new Set<object>();
  const exits: { value: object; after: number }[] = [];
  while (stack.length > 0) {
    while (exits.length > 0 && exits[exits.length - 1]!.after >= stack.length) open.delete(exits.pop()!.value);
    const item = stack.pop()!;
    let v = item.value;
    if (typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      try {
        v = (v as { toJSON(key: string): unknown }).toJSON('');
      } catch (err) {
        return { path: item.path, problem: `has a toJSON() that threw: ${err instanceof Error ? err.message : String(err)}` };
      }
    }
    // A boxed Number, String, Boolean or BigInt is what JSON.stringify reads it as: its primitive.
    if (v instanceof Number || v instanceof String || v instanceof Boolean || v instanceof BigInt) v = v.valueOf();
    const problem = scalarProblem(v);
    if (problem !== undefined) return { path: item.path, problem };
    if (typeof v !== 'object' || v === null) continue;
    if (open.has(v)) return { path: item.path, problem: 'is a circular reference, which JSON cannot hold' };
    if (item.depth >= maxDepth) return { path: item.path, problem: `is nested deeper than ${maxDepth} levels` };
    exits.push({ value: v, after: stack.length });
    open.add(v);
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: `${item.path}[${i}]`, depth: item.depth + 1 });
      continue;
    }
    let entries: [string, unknown][];
    try {
      entries = Object.entries(v);
    } catch (err) {
      return { path: item.path, problem: `cannot be read: ${err instanceof Error ? err.message : String(err)}` };
    }
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, member] = entries[i]!;
      const keyProblem = textProblem(key);
      const memberPath = `${item.path}${memberAccess(key)}`;
      if (keyProblem !== undefined) return { path: memberPath, problem: `has a key that ${keyProblem}` };
      if (member !== undefined) stack.push({ value: member, path: memberPath, depth: item.depth + 1 });
    }
  }
  return undefined;
}

function scalarProblem(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return textProblem(v);
    case 'number':
      return Number.isFinite(v) ? undefined : `is ${v}, which JSON cannot hold`;
    case 'boolean':
    case 'undefined':
      return undefined;
    case 'bigint':
    case 'function':
    case 'symbol':
      return `is a ${typeof v}, which JSON cannot hold`;
    case 'object':
      if (v instanceof Map || v instanceof Set) {
        return `is a ${v.constructor.name}, which JSON cannot hold (use an object or array)`;
      }
      return undefined;
  }
}

/** `.key` for a plain identifier, `["key"]` for anything else. */
function memberAccess(key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** Room left for the mark of a cut: "… [N more characters cut]" for any N a string can have. */
const CUT_MARK_CHARS = 40;

/**
 * Text for people, made storable: U+0000 and lone surrogates written as their JSON escapes, and
 * cut to at most `maxChars` with the cut marked. Text made so once is left as it is.
 */
export function storableText(text: string, maxChars = Infinity): string {
  let out = text;
  if (out.includes('\u0000') || LONE_SURROGATE.test(out)) {
    out = out.replace(UNSTORABLE_CHARS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  }
  if (out.length > maxChars) {
    let kept = Math.max(0, maxChars - CUT_MARK_CHARS);
    // Never between the halves of a surrogate pair: the cut would leave a lone one.
    if (kept > 0 && /[\uD800-\uDBFF]/.test(out[kept - 1]!)) kept -= 1;
    out = `${out.slice(0, kept)}… [${out.length - kept} more characters cut]`;
  }
  return out;
}
