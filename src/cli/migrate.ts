/** `spindle migrate`: create or update spindle's schema. */
import { parse } from './args.ts';
import { openDatabase } from './database.ts';
import { print } from './format.ts';

export async function migrateCommand(args: string[]): Promise<number> {
  const { values } = parse('migrate', args);
  const db = await openDatabase({ databaseUrl: values['database-url'], stateDir: values['state-dir'], migrate: false });
  try {
    const { migrate } = await import('../db/migrate.ts');
    const applied = await migrate(db.url);
    print(values.json, { applied }, () => (applied.length ? `applied ${applied.join(', ')}` : 'the database is up to date'));
    return 0;
  } finally {
    await db.close();
  }
}
