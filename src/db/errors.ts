/** What a database error means for the caller: the data of a statement, or the connection. */

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
