/**
 * The debug protocol on the wire, shared by the debug server and its clients (`spindle inspect`):
 * newline-delimited JSON, one request per line, answered in order:
 *   {"id":1,"op":"ping"}  ->  {"id":1,"ok":true,"result":{...}}  or  {"id":1,"ok":false,"error":"..."}
 * Ops: `ping`, `snapshot`, `jobs`, `pool`, and `subscribe`, after which the connection also carries
 * `{"event":"job:finished","data":{...}}` lines until the client leaves. Over TCP every request
 * carries `"token"`, the contents of `<stateDir>/run/debug.token`.
 */
import { wireJson } from './wire-json.ts';

/** The file, under `<stateDir>/run/`, that holds the TCP listener's token. */
export const TOKEN_FILE = 'debug.token';
/** The only address the TCP listener binds. */
export const TCP_HOST = '127.0.0.1';

/** The ops a client may send. */
export const DEBUG_OPS = ['ping', 'snapshot', 'jobs', 'pool', 'subscribe'] as const;
/** One op of the protocol. */
export type DebugOp = (typeof DEBUG_OPS)[number];

/** A request's `id`, echoed in its reply: a number or a string, else null. */
export type RequestId = string | number | null;

/** A request as read from its line; `op` is null when the line names no op of the protocol, and `error` says so. */
export type DebugRequest =
  | { id: RequestId; token: unknown; op: DebugOp }
  | { id: RequestId; token: unknown; op: null; error: string };

/** A reply or event that cannot be serialised. */
export const UNSERIALISABLE = Symbol('unserialisable');

/** Reads one request line (not blank); `{ malformed }` when it is no request at all. */
export function readRequest(text: string): DebugRequest | { malformed: string } {
  let request: unknown;
  try {
    request = JSON.parse(text);
  } catch (err) {
    return { malformed: `bad JSON: ${(err as Error).message}` };
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    return { malformed: 'a request is a JSON object such as {"id":1,"op":"ping"}' };
  }
  const fields = request as { id?: unknown; op?: unknown; token?: unknown };
  const id = typeof fields.id === 'number' || typeof fields.id === 'string' ? fields.id : null;
  const { op, token } = fields;
  if (typeof op !== 'string' || !(DEBUG_OPS as readonly string[]).includes(op)) {
    const shown = typeof op === 'string' ? `unknown op ${JSON.stringify(op.slice(0, 64))}` : 'missing "op"';
    return { id, token, op: null, error: `${shown}; the ops are ${DEBUG_OPS.join(', ')}` };
  }
  return { id, token, op: op as DebugOp };
}

/** A reply or event line (without its newline); UNSERIALISABLE if it cannot be made. */
export function serialise(value: unknown): string | typeof UNSERIALISABLE {
  try {
    return wireJson(value);
  } catch {
    return UNSERIALISABLE;
  }
}

/** An error reply line (without its newline). */
export function errorLine(id: RequestId, error: string): string {
  return JSON.stringify({ id, ok: false, error });
}
