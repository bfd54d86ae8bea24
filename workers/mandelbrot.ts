/**
 * Renders the Mandelbrot set by escape time with smooth colouring and encodes it
 * as a truecolour PNG (signature, IHDR, one IDAT deflated with node:zlib, IEND).
 */
import { crc32, deflateSync } from 'node:zlib';
import type { JobContext } from '../src/context.ts';
import { PermanentError } from '../src/errors.ts';

/** The widest and tallest image accepted, in pixels. */
export const MAX_SIDE = 4096;

/** The most iterations per pixel accepted. */
export const MAX_ITER = 10_000;

/** The deepest zoom accepted; beyond it doubles cannot tell neighbouring pixels apart. */
export const MAX_ZOOM = 1e13;

/** RGB, 8 bits per channel. */
const BYTES_PER_PIXEL = 3;

/** At zoom 1 the shorter side of the image spans this much of the complex plane. */
const SPAN_AT_ZOOM_1 = 3;

/** How long the handler may compute between two looks at the signal; rows vary too much to count them. */
const YIELD_EVERY_MS = 10;

/** Progress is reported whenever it has moved on by at least this many percent. */
const PROGRESS_STEP = 2;

/** The share of the progress bar given to rendering; deflating the image takes the rest. */
const RENDER_SHARE = 90;

const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

/** Input of `mandelbrot`. */
export interface MandelbrotInput {
  /** Image width in pixels, 1 to MAX_SIDE. */
  width: number;
  /** Image height in pixels, 1 to MAX_SIDE. */
  height: number;
  /** Iterations before a point counts as inside the set, 1 to MAX_ITER. */
  maxIter: number;
  /** Real part of the image centre (default -0.5). */
  centerX?: number;
  /** Imaginary part of the image centre (default 0). */
  centerY?: number;
  /** Magnification, > 0 and <= MAX_ZOOM (default 1: the whole set). */
  zoom?: number;
}

/** Output of `mandelbrot`. */
export interface MandelbrotOutput {
  width: number;
  height: number;
  /** The PNG file, base64: job outputs are stored as JSON. */
  png: string;
  /** Size of the PNG file in bytes. */
  bytes: number;
}

/** A demo input, the whole set: about 130 ms on one core. */
export const demoInput: MandelbrotInput = { width: 800, height: 600, maxIter: 500 };

/** Runtime options for the `mandelbrot` job type. */
export const options = { timeoutMs: 120_000, maxAttempts: 3 };

/** Renders the view described by `input` and returns it as a PNG. */
export default async function mandelbrot(
  input: MandelbrotInput,
  ctx: JobContext,
): Promise<MandelbrotOutput> {
  const view = readInput(input);
  const { width, height, maxIter } = view;
  ctx.signal.throwIfAborted();

  const palette = makePalette();
  const scale = SPAN_AT_ZOOM_1 / (view.zoom * Math.min(width, height));
  const left = view.centerX - (width / 2) * scale;
  const top = view.centerY + (height / 2) * scale;
  const rowBytes = 1 + width * BYTES_PER_PIXEL;
  // Filter type 0 (None) leads each row; a fresh buffer is already zero there.
  const raw = Buffer.alloc(height * rowBytes);

  let reported = 0;
  let lastYield = performance.now();
  for (let y = 0; y < height; y++) {
    const ci = top - y * scale;
    let offset = y * rowBytes + 1;
    for (let x = 0; x < width; x++) {
      const cr = left + x * scale;
      let zr = 0;
      let zi = 0;
      let zr2 = 0;
      let zi2 = 0;
      let n = 0;
      // Escape radius 4 (|z|^2 > 16) rather than 2 makes the smooth colouring steadier.
      while (n < maxIter && zr2 + zi2 <= 16) {
        zi = 2 * zr * zi + ci;
        zr = zr2 - zi2 + cr;
        zr2 = zr * zr;
        zi2 = zi * zi;
        n++;
      }
      if (n < maxIter) {
        const smooth = n + 1 - Math.log2(Math.log(zr2 + zi2) / 2);
        const colour = Math.floor(Math.sqrt(Math.max(smooth, 0) / maxIter) * 1023) & 255;
        raw[offset] = palette[colour * 3];
        raw[offset + 1] = palette[colour * 3 + 1];
        raw[offset + 2] = palette[colour * 3 + 2];
      }
      offset += BYTES_PER_PIXEL;
    }

    const percent = Math.floor(((y + 1) / height) * RENDER_SHARE);
    if (percent >= reported + PROGRESS_STEP) {
      reported = percent;
      ctx.progress(percent, 'rendering', { rows: y + 1 });
    }
    if (performance.now() - lastYield >= YIELD_EVERY_MS) {
      // The abort arrives as a message: without this turn of the event loop it could never fire.
      await yieldToEventLoop();
      ctx.signal.throwIfAborted();
      lastYield = performance.now();
    }
  }
  await yieldToEventLoop();
  ctx.signal.throwIfAborted();

  if (reported < RENDER_SHARE) ctx.progress(RENDER_SHARE, 'encoding');
  const png = encodePng(width, height, raw);
  ctx.progress(100, 'done', { bytes: png.length });
  return { width, height, png: Buffer.from(png.buffer, png.byteOffset, png.byteLength).toString('base64'), bytes: png.length };
}

/** Wraps rows of filtered RGB pixels in a PNG file: signature, IHDR, IDAT, IEND. */
function encodePng(width: number, height: number, raw: Buffer): Uint8Array {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: truecolour
  header[10] = 0; // compression: deflate
  header[11] = 0; // filter method: adaptive (each row says its own)
  header[12] = 0; // no interlace
  const chunks = [chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))];

  // One exact-size buffer: a view into a larger (pooled) one would be cloned whole across threads.
  const total = PNG_SIGNATURE.length + chunks.reduce((sum, c) => sum + c.length, 0);
  const png = new Uint8Array(total);
  png.set(PNG_SIGNATURE, 0);
  let offset = PNG_SIGNATURE.length;
  for (const c of chunks) {
    png.set(c, offset);
    offset += c.length;
  }
  return png;
}

/** One PNG chunk: length, type, data, and the CRC-32 of type and data. */
function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** 256 RGB colours from deep blue through white to orange (a cosine palette). */
function makePalette(): Uint8Array {
  const palette = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 256;
    palette[i * 3] = channel(t, 0.0);
    palette[i * 3 + 1] = channel(t, 0.1);
    palette[i * 3 + 2] = channel(t, 0.2);
  }
  return palette;
}

/** One channel of the cosine palette at position t with the given phase. */
function channel(t: number, phase: number): number {
  return Math.round(255 * (0.5 + 0.5 * Math.cos(2 * Math.PI * (t + phase + 0.5))));
}

/** The input with defaults filled in. */
interface View {
  width: number;
  height: number;
  maxIter: number;
  centerX: number;
  centerY: number;
  zoom: number;
}

/** Checks the input, throwing PermanentError (no retry) with the field's name. */
function readInput(input: MandelbrotInput): View {
  if (typeof input !== 'object' || input === null) {
    throw new PermanentError('input must be an object like { "width": 800, "height": 600, "maxIter": 500 }');
  }
  return {
    width: integerIn(input.width, 'width', 1, MAX_SIDE),
    height: integerIn(input.height, 'height', 1, MAX_SIDE),
    maxIter: integerIn(input.maxIter, 'maxIter', 1, MAX_ITER),
    centerX: finite(input.centerX ?? -0.5, 'centerX'),
    centerY: finite(input.centerY ?? 0, 'centerY'),
    zoom: positiveUpTo(input.zoom ?? 1, 'zoom', MAX_ZOOM),
  };
}

/** `value` if it is an integer in [min, max]; otherwise a PermanentError naming `input.field`. */
function integerIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PermanentError(`input.${field} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
  }
  return value;
}

/** `value` if it is a finite number; otherwise a PermanentError naming `input.field`. */
function finite(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new PermanentError(`input.${field} must be a finite number (got ${JSON.stringify(value)})`);
  }
  return value;
}

/** `value` if it is a number in (0, max]; otherwise a PermanentError naming `input.field`. */
function positiveUpTo(value: unknown, field: string, max: number): number {
  if (typeof value !== 'number' || !(value > 0) || value > max) {
    throw new PermanentError(`input.${field} must be a number > 0 and <= ${max} (got ${JSON.stringify(value)})`);
  }
  return value;
}

/** Lets pending messages (an abort among them) be delivered before the next chunk of work. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
