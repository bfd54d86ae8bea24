/** Thread side: anything thrown, turned into a readable, storable SerializedError. */
import { inspect } from 'node:util';
import type { SerializedError } from './protocol.ts';
import { MAX_ERROR_TEXT_CHARS, storableText } from '../storable.ts';

/** Characters kept when describing a thrown non-Error value. */
const MAX_VALUE_CHARS = 1024;
/** Characters kept of an error's name. */
const MAX_ERROR_NAME_CHARS = 200;

/** Turns anything thrown into a readable SerializedError. Never throws. */
export function serializeThrown(
  value: unknown,
  phase: SerializedError['phase'],
  nonErrorPrefix = 'handler threw a non-Error value',
): SerializedError {
  try {
    if (isErrorLike(value)) {
      const name = typeof value.name === 'string' && value.name !== '' ? storableText(value.name, MAX_ERROR_NAME_CHARS) : 'Error';
      const text = typeof value.message === 'string' ? value.message : String(value.message);
      const error: SerializedError = {
        name,
        message: text !== '' ? storableText(text, MAX_ERROR_TEXT_CHARS) : `${name} (without a message)`,
        phase,
      };
      if (typeof value.stack === 'string') error.stack = storableText(value.stack, MAX_ERROR_TEXT_CHARS);
      if (value.permanent === true || name === 'PermanentError') error.permanent = true;
      return error;
    }
    const error: SerializedError = { name: 'Error', message: `${nonErrorPrefix}: ${describeValue(value)}`, phase };
    if (typeof value === 'object' && value !== null && (value as { permanent?: unknown }).permanent === true) {
      error.permanent = true;
    }
    return error;
  } catch {
    return { name: 'Error', message: `${nonErrorPrefix} that cannot be described`, phase };
  }
}

interface ErrorLike {
  name: unknown;
  message: unknown;
  stack?: unknown;
  permanent?: unknown;
}

export function isErrorLike(value: unknown): value is ErrorLike {
  // The tag test also catches errors from another realm, where instanceof fails.
  return value instanceof Error || Object.prototype.toString.call(value) === '[object Error]';
}

export function describeValue(value: unknown): string {
  let text: string | undefined;
  // JSON for strings and plain data ("boom", {"code":1}); inspect for the rest (NaN, 10n, functions, cycles).
  if (typeof value === 'string' || isPlainData(value)) {
    try {
      text = JSON.stringify(value);
    } catch {
      text = undefined;
    }
  }
  if (text === undefined) text = inspect(value, { depth: 2, breakLength: Infinity });
  return storableText(truncate(text, MAX_VALUE_CHARS));
}

function isPlainData(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return Array.isArray(value) || proto === Object.prototype || proto === null;
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}
