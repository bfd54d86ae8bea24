import { createHash } from 'node:crypto';
import { MessageChannel } from 'node:worker_threads';
import { inflateSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../src/context.ts';
import { PermanentError } from '../src/errors.ts';
import hashchain from '../workers/hashchain.ts';
import mandelbrot from '../workers/mandelbrot.ts';
import noop from '../workers/noop.ts';
import primes from '../workers/primes.ts';
import spin from '../workers/spin.ts';
import wordfreq from '../workers/wordfreq.ts';

interface ProgressCall {
  percent: number;
  message?: string;
  data?: unknown;
}

/** A hand-made ctx: a real AbortController, progress and log calls collected. */
function makeContext(onProgress?: (call: ProgressCall, controller: AbortController) => void) {
  const controller = new AbortController();
  const progress: ProgressCall[] = [];
  const logs: unknown[][] = [];
  const ctx: JobContext = {
    jobId: '1',
    attempt: 1,
    maxAttempts: 3,
    signal: controller.signal,
    progress(percent, message, data) {
      const call = { percent, message, data };
      progress.push(call);
      onProgress?.(call, controller);
    },
    log(...args) {
      logs.push(args);
    },
  };
  return { ctx, controller, progress, logs };
}

const openPorts: MessageChannel[] = [];
afterEach(() => {
  for (const channel of openPorts.splice(0)) {
    channel.port1.close();
    channel.port2.close();
  }
});

/**
 * A ctx whose abort arrives the way the runtime sends it: as a message on a port,
 * posted when the first progress report comes in. The handler only sees it if it
 * lets the event loop turn while it works.
 */
function makeContextAbortedByMessage(reason: Error) {
  const channel = new MessageChannel();
  openPorts.push(channel);
  let posted = false;
  const made = makeContext(() => {
    if (posted) return;
    posted = true;
    channel.port1.postMessage('abort');
  });
  channel.port2.on('message', () => made.controller.abort(reason));
  return { ...made, posted: () => posted };
}

/** Progress went up strictly, in steps of at most `maxStep`, from 0–100, and ended at 100. */
function expectCompleteProgress(progress: ProgressCall[], maxStep = 10): void {
  expect(progress.length).toBeGreaterThanOrEqual(5);
  let previous = 0;
  for (const { percent } of progress) {
    expect(percent).toBeGreaterThan(previous);
    expect(percent - previous).toBeLessThanOrEqual(maxStep);
    expect(percent).toBeLessThanOrEqual(100);
    previous = percent;
  }
  expect(progress.at(-1)?.percent).toBe(100);
}

/** Each CPU-heavy worker with a quick input and one that would take seconds. */
const cpuWorkers: Array<{ name: string; run: (ctx: JobContext, size: 'small' | 'large') => Promise<unknown> }> = [
  {
    name: 'primes',
    run: (ctx, size) => primes({ limit: size === 'small' ? 10_000_000 : 200_000_000 }, ctx),
  },
  {
    name: 'hashchain',
    run: (ctx, size) => hashchain({ seed: 'spindle', rounds: size === 'small' ? 100_000 : 10_000_000 }, ctx),
  },
  {
    name: 'mandelbrot',
    run: (ctx, size) =>
      mandelbrot(
        size === 'small' ? { width: 300, height: 200, maxIter: 200 } : { width: 4096, height: 4096, maxIter: 2000 },
        ctx,
      ),
  },
  {
    name: 'wordfreq',
    run: (ctx, size) => wordfreq({ words: size === 'small' ? 200_000 : 50_000_000, seed: 7 }, ctx),
  },
];

describe.each(cpuWorkers)('$name', ({ run }) => {
  it('reports progress every few percent, rising, ending at 100, with a structured-cloneable output', async () => {
    const { ctx, progress } = makeContext();
    const output = await run(ctx, 'small');
    expectCompleteProgress(progress);
    expect(structuredClone(output)).toEqual(output);
  });

  it('does no work when the signal has already fired', async () => {
    const { ctx, controller, progress } = makeContext();
    const reason = new Error('cancelled before start');
    controller.abort(reason);
    await expect(run(ctx, 'large')).rejects.toBe(reason);
    expect(progress).toEqual([]);
  });

  it('stops at the next check once the signal fires during the work', async () => {
    const reason = new Error('cancelled while running');
    const { ctx, progress } = makeContext((_call, controller) => controller.abort(reason));
    await expect(run(ctx, 'large')).rejects.toBe(reason);
    expect(progress).toHaveLength(1);
    expect(progress[0].percent).toBeLessThan(10);
  });

  it('sees an abort that arrives as a message while it computes, and stops early', async () => {
    const reason = new Error('timed out');
    const { ctx, progress, posted } = makeContextAbortedByMessage(reason);
    await expect(run(ctx, 'large')).rejects.toBe(reason);
    expect(posted()).toBe(true);
    // Each handler lets the event loop turn, and looks at the signal, every few milliseconds of work,
    // and a progress step (2% of seconds of work) is far more than that: it stopped before another
    // step or two. Counted in work, not in ms: a loaded machine slows the work, not the turns' order.
    expect(Math.max(...progress.map((call) => call.percent))).toBeLessThan(10);
  });
});

describe('primes', () => {
  it('counts the 78 498 primes below one million', async () => {
    const { ctx } = makeContext();
    expect(await primes({ limit: 1_000_000 }, ctx)).toEqual({ limit: 1_000_000, count: 78_498, largest: 999_983 });
  });

  it('counts inclusively at the smallest limits', async () => {
    const { ctx } = makeContext();
    expect(await primes({ limit: 2 }, ctx)).toEqual({ limit: 2, count: 1, largest: 2 });
    expect(await primes({ limit: 3 }, ctx)).toEqual({ limit: 3, count: 2, largest: 3 });
    expect(await primes({ limit: 10 }, ctx)).toEqual({ limit: 10, count: 4, largest: 7 });
    expect(await primes({ limit: 11 }, ctx)).toEqual({ limit: 11, count: 5, largest: 11 });
  });

  it('agrees with a plain sieve around segment boundaries', async () => {
    const max = 400_000;
    const composite = new Uint8Array(max + 1);
    for (let n = 2; n * n <= max; n++) {
      if (composite[n] === 0) for (let m = n * n; m <= max; m += n) composite[m] = 1;
    }
    const { ctx } = makeContext();
    // A segment holds 65 536 odd numbers, 131 072 integers.
    for (const limit of [131_071, 131_072, 131_073, 131_075, 262_143, 262_147, 393_215, max]) {
      let count = 0;
      let largest = 0;
      for (let n = 2; n <= limit; n++) {
        if (composite[n] === 0) {
          count++;
          largest = n;
        }
      }
      expect(await primes({ limit }, ctx)).toEqual({ limit, count, largest });
    }
  });
});

describe('hashchain', () => {
  const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest();

  it('one round is the SHA-256 of the seed', async () => {
    const { ctx } = makeContext();
    expect(await hashchain({ seed: 'spindle', rounds: 1 }, ctx)).toEqual({
      digest: sha256('spindle').toString('hex'),
      rounds: 1,
    });
  });

  it('each further round hashes the raw 32-byte digest of the one before', async () => {
    const { ctx } = makeContext();
    expect((await hashchain({ seed: 'spindle', rounds: 2 }, ctx)).digest).toBe(
      sha256(sha256('spindle')).toString('hex'),
    );
    expect((await hashchain({ seed: 'spindle', rounds: 3 }, ctx)).digest).toBe(
      sha256(sha256(sha256('spindle'))).toString('hex'),
    );
  });

  it('hashes the seed as UTF-8', async () => {
    const { ctx } = makeContext();
    expect((await hashchain({ seed: 'héllo ✓', rounds: 1 }, ctx)).digest).toBe(
      sha256(Buffer.from('héllo ✓', 'utf8')).toString('hex'),
    );
  });
});

/** CRC-32 (IEEE), by the table, independent of node:zlib. */
function crc32(bytes: Uint8Array): number {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  let crc = 0xffffffff;
  for (const byte of bytes) crc = table[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

interface PngChunk {
  type: string;
  data: Buffer;
}

/** Splits a PNG into its chunks, checking the signature and every CRC on the way. */
function readPng(png: Uint8Array): PngChunk[] {
  const buffer = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  expect([...buffer.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const chunks: PngChunk[] = [];
  let offset = 8;
  while (offset < buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString('latin1', offset + 4, offset + 8);
    const data = buffer.subarray(offset + 8, offset + 8 + length);
    expect(buffer.readUInt32BE(offset + 8 + length), `CRC of ${type}`).toBe(
      crc32(buffer.subarray(offset + 4, offset + 8 + length)),
    );
    chunks.push({ type, data });
    offset += 12 + length;
  }
  expect(offset).toBe(buffer.length);
  return chunks;
}

/** The filtered scanlines of a PNG: the IDAT data, inflated. */
function scanlines(chunks: PngChunk[]): Buffer {
  return inflateSync(Buffer.concat(chunks.filter((chunk) => chunk.type === 'IDAT').map((chunk) => chunk.data)));
}

describe('mandelbrot', () => {
  it('encodes a valid truecolour PNG of the asked size', async () => {
    const { ctx } = makeContext();
    const width = 321;
    const height = 123;
    const output = await mandelbrot({ width, height, maxIter: 100 }, ctx);
    expect(output.width).toBe(width);
    expect(output.height).toBe(height);
    expect(typeof output.png).toBe('string');
    const png = Buffer.from(output.png, 'base64');
    expect(output.bytes).toBe(png.length);
    // An exact-size buffer, so the thread does not clone a larger one along with it.

    const chunks = readPng(png);
    expect(chunks.map((chunk) => chunk.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    const header = chunks[0].data;
    expect(header.length).toBe(13);
    expect(header.readUInt32BE(0)).toBe(width);
    expect(header.readUInt32BE(4)).toBe(height);
    expect([...header.subarray(8)]).toEqual([8, 2, 0, 0, 0]);
    expect(chunks[2].data.length).toBe(0);

    const bytesPerPixel = 3;
    const raw = scanlines(chunks);
    expect(raw.length).toBe(height * (1 + width * bytesPerPixel));
    for (let y = 0; y < height; y++) expect(raw[y * (1 + width * bytesPerPixel)]).toBe(0);
  });

  it('paints the set black and the outside in colour', async () => {
    const { ctx } = makeContext();
    const width = 301;
    const height = 201;
    const raw = scanlines(readPng(Buffer.from((await mandelbrot({ width, height, maxIter: 200 }, ctx)).png, 'base64')));
    const pixel = (x: number, y: number) => {
      const at = y * (1 + width * 3) + 1 + x * 3;
      return [raw[at], raw[at + 1], raw[at + 2]];
    };
    // The default view is centred on -0.5 + 0i, inside the main cardioid; its corners are far outside.
    expect(pixel(150, 100)).toEqual([0, 0, 0]);
    expect(pixel(0, 0)).not.toEqual([0, 0, 0]);
    expect(pixel(300, 200)).not.toEqual([0, 0, 0]);
  });

  it('follows centre and zoom: a view well inside the cardioid is all black', async () => {
    const { ctx } = makeContext();
    const width = 64;
    const height = 48;
    const output = await mandelbrot({ width, height, maxIter: 300, centerX: -0.2, centerY: 0, zoom: 100 }, ctx);
    const raw = scanlines(readPng(Buffer.from(output.png, 'base64')));
    expect(raw.every((byte) => byte === 0)).toBe(true);
  });
});

describe('wordfreq', () => {
  it('counts the words of a text, ignoring case and punctuation', async () => {
    const { ctx } = makeContext();
    const text = "The cat and the dog. THE end; don't stop, the Cat! Été été 42 42";
    expect(await wordfreq({ text, top: 4 }, ctx)).toEqual({
      totalWords: 15,
      distinctWords: 9,
      top: [
        { word: 'the', count: 4 },
        { word: '42', count: 2 },
        { word: 'cat', count: 2 },
        { word: 'été', count: 2 },
      ],
    });
  });

  it('counts a long text in chunks with progress', async () => {
    const { ctx, progress } = makeContext();
    const text = 'alpha beta, beta. Gamma gamma GAMMA\n'.repeat(50_000);
    expect(await wordfreq({ text, top: 3 }, ctx)).toEqual({
      totalWords: 300_000,
      distinctWords: 3,
      top: [
        { word: 'gamma', count: 150_000 },
        { word: 'beta', count: 100_000 },
        { word: 'alpha', count: 50_000 },
      ],
    });
    expectCompleteProgress(progress);
  });

  it('generates the same Zipf corpus from the same seed, another from another', async () => {
    const { ctx } = makeContext();
    const first = await wordfreq({ words: 100_000, seed: 3, top: 5 }, ctx);
    const again = await wordfreq({ words: 100_000, seed: 3, top: 5 }, ctx);
    const other = await wordfreq({ words: 100_000, seed: 4, top: 5 }, ctx);
    expect(again).toEqual(first);
    expect(other).not.toEqual(first);
    expect(first.totalWords).toBe(100_000);
    // Zipf over 5000 words: the top word is about 1 / H(5000), some 11 %, of the corpus.
    expect(first.top[0].word).toBe('ka');
    expect(first.top[0].count / first.totalWords).toBeGreaterThan(0.09);
    expect(first.top[0].count / first.totalWords).toBeLessThan(0.13);
    const counts = first.top.map((entry) => entry.count);
    expect(counts).toEqual([...counts].sort((a, b) => b - a));
  });
});

describe('noop', () => {
  it('returns its input', async () => {
    const input = { n: 1, nested: ['a'] };
    expect(await noop(input)).toBe(input);
  });
});

describe('spin', () => {
  it('keeps the thread busy for the asked time', async () => {
    const { ctx } = makeContext();
    const started = performance.now();
    const output = await spin({ ms: 30 }, ctx);
    expect(performance.now() - started).toBeGreaterThanOrEqual(30);
    expect(output.ms).toBe(30);
    expect(output.iterations).toBeGreaterThan(0);
  });

  it('spins 20 ms by default', async () => {
    const { ctx } = makeContext();
    expect((await spin({}, ctx)).ms).toBe(20);
    expect((await spin(undefined, ctx)).ms).toBe(20);
  });
});

describe('bad input is a PermanentError naming the field', () => {
  const cases: Array<[string, (ctx: JobContext) => Promise<unknown>, RegExp]> = [
    ['primes: no input', (ctx) => primes(null as never, ctx), /^input must be an object/],
    ['primes: missing limit', (ctx) => primes({} as never, ctx), /^input\.limit must be an integer/],
    ['primes: fractional limit', (ctx) => primes({ limit: 1.5 }, ctx), /^input\.limit .*\(got 1\.5\)/],
    ['primes: limit too large', (ctx) => primes({ limit: 200_000_001 }, ctx), /^input\.limit .* to 200000000/],
    ['primes: limit too small', (ctx) => primes({ limit: 1 }, ctx), /^input\.limit .*from 2/],
    ['hashchain: seed not a string', (ctx) => hashchain({ seed: 5 as never, rounds: 1 }, ctx), /^input\.seed /],
    ['hashchain: zero rounds', (ctx) => hashchain({ seed: 'a', rounds: 0 }, ctx), /^input\.rounds .*\(got 0\)/],
    ['hashchain: too many rounds', (ctx) => hashchain({ seed: 'a', rounds: 1e7 + 1 }, ctx), /^input\.rounds /],
    ['mandelbrot: too wide', (ctx) => mandelbrot({ width: 4097, height: 10, maxIter: 10 }, ctx), /^input\.width /],
    ['mandelbrot: no height', (ctx) => mandelbrot({ width: 10, maxIter: 10 } as never, ctx), /^input\.height /],
    ['mandelbrot: maxIter a string', (ctx) => mandelbrot({ width: 1, height: 1, maxIter: '9' as never }, ctx), /^input\.maxIter /],
    ['mandelbrot: zero zoom', (ctx) => mandelbrot({ width: 1, height: 1, maxIter: 1, zoom: 0 }, ctx), /^input\.zoom /],
    ['mandelbrot: NaN centre', (ctx) => mandelbrot({ width: 1, height: 1, maxIter: 1, centerX: NaN }, ctx), /^input\.centerX /],
    ['wordfreq: neither text nor words', (ctx) => wordfreq({}, ctx), /^input\.words /],
    ['wordfreq: both text and words', (ctx) => wordfreq({ text: 'a', words: 1 }, ctx), /^input\.text and input\.words /],
    ['wordfreq: text not a string', (ctx) => wordfreq({ text: 5 as never }, ctx), /^input\.text /],
    ['wordfreq: top zero', (ctx) => wordfreq({ words: 10, top: 0 }, ctx), /^input\.top /],
    ['wordfreq: fractional seed', (ctx) => wordfreq({ words: 10, seed: 0.5 }, ctx), /^input\.seed /],
    ['spin: negative ms', (ctx) => spin({ ms: -1 }, ctx), /^input\.ms /],
    ['spin: input a number', (ctx) => spin(5 as never, ctx), /^input must be an object/],
  ];

  it.each(cases)('%s', async (_name, run, message) => {
    const { ctx, progress } = makeContext();
    const error = await run(ctx).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).permanent).toBe(true);
    expect((error as PermanentError).message).toMatch(message);
    expect(progress).toEqual([]);
  });
});
