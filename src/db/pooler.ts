/**
 * Connections through a transaction pooler (PgBouncer in transaction mode, and the managed poolers
 * like it): each transaction may run on another server session, so nothing may outlive one. A named
 * (prepared) statement does: PgBouncer before 1.21 cannot carry one over, and the next transaction
 * on another session fails with "prepared statement ... does not exist".
 */
import pg from 'pg';

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
