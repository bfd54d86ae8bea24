/**
 * OpenTelemetry through @opentelemetry/api only: spans go to whatever SDK the application set up,
 * and cost next to nothing when it set up none (the API's tracer is a no-op then). A job carries its
 * enqueue's W3C trace context (`traceparent`) from the producer span to the attempt's consumer span,
 * across processes, in the job's row.
 */
import {
  context,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import { VERSION } from './version.ts';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

// A proxy: it reaches the application's provider whenever one is registered, before or after this.
const TRACER = trace.getTracer('spindle', VERSION);
const tracer = () => TRACER;

/** `00-<trace id>-<span id>-<flags>`, or undefined for a span that is not part of a trace. */
export function traceparentOf(span: Span | undefined): string | undefined {
  const sc = span?.spanContext();
  if (sc === undefined || !isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags.toString(16).padStart(2, '0')}`;
}

/** The remote span context a traceparent names, or undefined when it names none. */
export function parseTraceparent(text: string | null | undefined): SpanContext | undefined {
  const m = text ? TRACEPARENT.exec(text) : null;
  if (!m) return undefined;
  const sc: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: Number.parseInt(m[3]!, 16), isRemote: true };
  return isSpanContextValid(sc) ? sc : undefined;
}

/**
 * Runs `work` inside a producer span (`spindle.enqueue TYPE`), a child of the caller's active span,
 * and hands it the span's traceparent to store with what it enqueues. Errors end the span as errors.
 */
export async function withProducerSpan<T>(
  name: string,
  attributes: Attributes,
  work: (traceparent: string | undefined) => Promise<T>,
): Promise<T> {
  const span = tracer().startSpan(name, { kind: SpanKind.PRODUCER, attributes });
  try {
    return await context.with(trace.setSpan(context.active(), span), () => work(traceparentOf(span)));
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
    throw error;
  } finally {
    span.end();
  }
}

/** The context an attempt's span starts in: the enqueue's, when the job carries one. */
function parentOf(traceparent: string | null | undefined): Context {
  const sc = parseTraceparent(traceparent);
  return sc === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, sc);
}

/** An attempt's consumer span (`spindle.run TYPE`), a child of its enqueue's span, started at the claim. */
export function startAttemptSpan(type: string, traceparent: string | null | undefined, attributes: Attributes): Span {
  return tracer().startSpan(`spindle.run ${type}`, { kind: SpanKind.CONSUMER, attributes }, parentOf(traceparent));
}

/** A workflow run's resume (`spindle.workflow NAME`), a child of its startWorkflow's span. */
export function startResumeSpan(name: string, traceparent: string | null | undefined, attributes: Attributes): Span {
  return tracer().startSpan(`spindle.workflow ${name}`, { kind: SpanKind.CONSUMER, attributes }, parentOf(traceparent));
}

/** A step that runs in this resume (`spindle.step NAME`), a child of the resume's span. */
export function startStepSpan(resume: Span, name: string): Span {
  return tracer().startSpan(`spindle.step ${name}`, { kind: SpanKind.INTERNAL, attributes: { 'spindle.step': name } }, trace.setSpan(ROOT_CONTEXT, resume));
}

/** Ends a span with an error status when `error` is given. */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : new Error(String(error)));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }
  span.end();
}

/** Ends an attempt's span with its outcome: an error status for all but success. */
export function endAttemptSpan(span: Span, outcome: string, error?: { message?: string } | null): void {
  span.setAttribute('spindle.outcome', outcome);
  if (outcome !== 'succeeded') span.setStatus({ code: SpanStatusCode.ERROR, message: error?.message ?? outcome });
  span.end();
}

/**
 * The trace and span ids of a span, for log lines, under the names OpenTelemetry's log correlation
 * uses (as its pino instrumentation writes them); none when the span is not part of a trace.
 */
export function traceFields(span: Span | undefined): { trace_id?: string; span_id?: string; trace_flags?: string } {
  const sc = span?.spanContext();
  if (sc === undefined || !isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: sc.traceFlags.toString(16).padStart(2, '0') };
}
