/**
 * Connections through a transaction pooler (PgBouncer in transaction mode, and the managed poolers
 * like it): each transaction may run on another server session, so nothing may outlive one. A named
 * (prepared) statement does: PgBouncer before 1.21 cannot carry one over, and the next transaction
 * on another session fails with "prepared statement ... does not exist".
 */
import pg from 'pg';
import type { Queryable } from './queryable.ts';

/** The application_name of every supervisor's connections through a transaction pooler (see start.ts). */
export const POOLED_APPLICATION_NAME = 'spindle:pooled';

/**
 * A pg client that sends every statement unnamed (parsed and planned on each call), whatever name
 * the caller gave it, so the statements of src/db/ keep their names for a direct connection and run
 * as they are through a transaction pooler.
 */
export class UnnamedStatementClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    const query = this.query.bind(this) as (...args: unknown[]) => unknown;
    this.query = ((config: unknown, ...rest: unknown[]) => query(withoutName(config), ...rest)) as pg.Client['query'];
  }
}

/** A query config without its name; anything else (a text, a submittable) as it is. */
function withoutName(config: unknown): unknown {
  if (typeof config !== 'object' || config === null || Object.getPrototypeOf(config) !== Object.prototype) return config;
  if (!('name' in config)) return config;
  const { name: _name, ...unnamed } = config as pg.QueryConfig;
  return unnamed;
}

/** Pool settings for a pooler mode: through a transaction pooler, clients that name no statement. */
export function poolClientFor(transactionPooler: boolean): Pick<pg.PoolConfig, 'Client'> {
  return transactionPooler ? { Client: UnnamedStatementClient as unknown as NonNullable<pg.PoolConfig['Client']> } : {};
}

/**
 * A Queryable whose every statement runs after `settings` (SET LOCAL ...) in one simple query, so in
 * one implicit transaction and one round trip: a pooler holds a server session for that statement
 * alone, as for any other, and the settings end with it. The simple protocol takes no parameters, so
 * the values are written into the text as literals (inlineValues). For statements of src/db/ whose
 * parameters are strings, numbers, booleans and arrays of them.
 */
export function withSettingsPerStatement(pool: pg.Pool, settings: string): Queryable {
  const query = async (config: string | pg.QueryConfig, values?: unknown[]) => {
    const statement = typeof config === 'string' ? { text: config, values } : config;
    const results = (await pool.query(`${settings}; ${inlineValues(statement.text, statement.values ?? [])}`)) as unknown as pg.QueryResult[];
    return results[results.length - 1]!;
  };
  return { query } as unknown as Queryable;
}

/** `text` with each `$n` replaced by the literal of values[n - 1]. */
export function inlineValues(text: string, values: readonly unknown[]): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const index = Number(n) - 1;
    if (index >= values.length) throw new Error(`statement parameter $${n} has no value`);
    return literal(values[index]);
  });
}

function literal(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot write ${value} into a statement`);
    // In parentheses, a negative number cannot join a minus before it into a comment (`x--5`).
    return value < 0 ? `(${value})` : String(value);
  }
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return pg.escapeLiteral(value);
  if (Array.isArray(value)) return pg.escapeLiteral(`{${value.map(arrayElement).join(',')}}`);
  throw new Error(`cannot write a ${typeof value} into a statement`);
}

/** An element of an array literal: NULL, or double-quoted with its quotes and backslashes escaped. */
function arrayElement(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
    throw new Error(`cannot write a ${typeof value} into an array literal`);
  }
  return `"${String(value).replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
