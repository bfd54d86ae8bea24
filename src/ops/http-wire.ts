/** The HTTP API's requests and replies: JSON bodies read within bounds, JSON replies, errors as statuses. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ValidationError } from '../errors.ts';
import { wireJson } from './wire-json.ts';

/** Sent with every reply, the dashboard's files included. */
export const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
};

/** An error with the HTTP status it maps to. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** One request, as a route sees it. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
}

/** A route of the API. */
export interface Route {
  /** Path segments; `:id` matches one segment. */
  path: string[];
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  run: (ctx: RequestContext) => Promise<void> | void;
}

/** Replies with `body` as JSON, never cached. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = wireJson(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Reads a JSON body of at most `maxBytes`; `optional` allows an empty one (undefined). */
export async function readJson(req: IncomingMessage, maxBytes: number, optional = false): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw new HttpError(413, `request body over ${maxBytes} bytes`);
  // Events, not `for await`: leaving an async iterator early destroys the socket, and the 413 with it.
  const text = await new Promise<Buffer>((done, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      req.off('end', onEnd);
      fail(new HttpError(413, `request body over ${maxBytes} bytes`));
    };
    const onEnd = () => done(Buffer.concat(chunks));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', fail);
  });
  if (text.length === 0) {
    if (optional) return undefined;
    throw new ValidationError('body', 'is empty; send a JSON object');
  }
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw new HttpError(415, `content-type must be application/json, got ${JSON.stringify(type)}`);
  }
  try {
    return JSON.parse(text.toString('utf8')) as unknown;
  } catch (error) {
    throw new HttpError(400, `body is not valid JSON: ${(error as Error).message}`);
  }
}
