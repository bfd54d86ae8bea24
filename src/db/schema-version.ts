/**
 * Whether a database holds the spindle schema this code was written for: the migrations it applied
 * (spindle.migrations, one row per file of migrations/) are exactly the code's. A database without
 * the schema, or migrated by an older or a newer spindle, gets a SchemaError that says what to do,
 * instead of the raw error of the first statement that trips on it.
 */
import { SchemaError } from '../errors.ts';
import { migrationNames } from './migrate.ts';
import { appliedMigrations } from './migration-queries.ts';
import type { Queryable } from './queryable.ts';

const UNDEFINED_TABLE = '42P01';
const INVALID_SCHEMA_NAME = '3F000';
const MIGRATE = 'run `spindle migrate`, or start a supervisor, which migrates';

let codeMigrations: Promise<string[]> | undefined;

/** Throws SchemaError unless the database's spindle schema is the one this code expects. */
export async function checkSchemaVersion(db: Queryable): Promise<void> {
  const applied = await readApplied(db);
  codeMigrations ??= migrationNames();
  const known = await codeMigrations;
  const expected = known.at(-1)!;
  if (applied.length === 0) throw new SchemaError(`this database has no spindle schema: ${MIGRATE}`);
  const found = applied.at(-1)!;
  if (applied.some((name) => !known.includes(name))) {
    throw new SchemaError(
      `this database's spindle schema is at version ${describe(found)}, newer than this spindle's ${describe(expected)}: ` +
        `upgrade spindle here (the database was migrated by a newer spindle)`,
    );
  }
  if (known.some((name) => !applied.includes(name))) {
    throw new SchemaError(
      `this database's spindle schema is at version ${describe(found)}, older than this spindle's ${describe(expected)}: ${MIGRATE}`,
    );
  }
}

/** The names of the applied migrations, in order; empty when there is no spindle schema. */
async function readApplied(db: Queryable): Promise<string[]> {
  try {
    return [...(await appliedMigrations(db))].sort();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === UNDEFINED_TABLE || code === INVALID_SCHEMA_NAME) return [];
    throw error;
  }
}

/** `6 (0006_strict_enqueue)` */
function describe(migration: string): string {
  return `${Number(migration.slice(0, 4))} (${migration})`;
}
