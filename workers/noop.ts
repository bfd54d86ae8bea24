/**
 * Returns its input at once. For benchmarks: what is left of a job's cost is
 * the runtime's own (claim, dispatch, thread hop, completion).
 */

/** Resolves with `input` unchanged. */
export default async function noop<T>(input: T): Promise<T> {
  return input;
}
