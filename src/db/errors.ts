/**
 * What a database error means for the caller (the data of a statement, or the connection), and how a
 * batch writer keeps one refused item from holding up the rest.
 */

/**
 * True when PostgreSQL refused a statement for what it carried (SQLSTATE class 22, data exception;
 * 23, integrity constraint; 54, program limit such as a value too large or nested too deep): sent
 * again, the same data fails again. Anything else (a dropped connection, a restarting server, a
 * deadlock, a cancelled statement) may pass on a retry.
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(22|23|54)/.test(code);
}

/**
 * Writes `items` with `write`. When the database refuses the statement for its data, the batch is
 * halved until the item at fault is alone, and `refused` decides what becomes of it; the others are
 * written. Any other error is thrown: the caller retries the batch.
 */
export async function writeIsolating<T, R>(
  items: T[],
  write: (items: T[]) => Promise<R>,
  refused: (item: T, err: unknown) => Promise<R>,
  merge: (a: R, b: R) => R,
): Promise<R> {
  try {
    return await write(items);
  } catch (err) {
    if (!isDataError(err)) throw err;
    if (items.length === 1) return refused(items[0]!, err);
    const half = Math.ceil(items.length / 2);
    const first = await writeIsolating(items.slice(0, half), write, refused, merge);
    return merge(first, await writeIsolating(items.slice(half), write, refused, merge));
  }
}
