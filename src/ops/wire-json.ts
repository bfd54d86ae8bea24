/** JSON as the ops servers send it, over the debug socket and the HTTP API alike. */

/**
 * `value` as JSON for a client: an Error becomes `{ name, message }` (JSON.stringify would give `{}`
 * and the stack stays in the process), a bigint its decimal string (JSON.stringify would throw).
 */
export function wireJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Error) return { name: v.name, message: v.message };
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}
