/**
 * Who uses the embedded server, kept by the server itself. Each user (a supervisor, a CLI command)
 * holds one session named `spindle:embedded-member:<pid>:<id>` for as long as it uses the server.
 * PostgreSQL ends the session of a process that dies, however it dies, so the sessions are the live
 * users: no pid files to go stale, no recycled pids to mistake. The session also tells its holder at
 * once when the server goes away (its 'end' event).
 *
 * Joining and the last user's decision to stop take turns on one advisory lock: the last user holds
 * it exclusively from counting the others until the server is gone, and a joiner waits for it
 * (shared) after its session is open. So a joiner is either counted, or sees the server stop and
 * starts it again; it never joins a server that is about to stop.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const MEMBER_PREFIX = 'spindle:embedded-member:';
const MEMBERS_LOCK = "hashtext('spindle.embedded.members')";

/** Opens a member session on `url` and waits until no user is deciding to stop the server. */
export async function joinMembers(url: string, connectTimeoutMs: number): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: url,
    application_name: `${MEMBER_PREFIX}${process.pid}:${randomBytes(3).toString('hex')}`,
    connectionTimeoutMillis: connectTimeoutMs,
  });
  // The holder learns of a lost session from 'end'; an 'error' without a listener would crash it.
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query(`SELECT pg_advisory_lock_shared(${MEMBERS_LOCK})`);
    await client.query(`SELECT pg_advisory_unlock_shared(${MEMBERS_LOCK})`);
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
  return client;
}

/**
 * True when `member` is the only member session left. Takes the members' lock and keeps it until
 * the session ends: the caller stops the server (last) or closes the session (not last).
 */
export async function isLastMember(member: pg.Client): Promise<boolean> {
  await member.query(`SELECT pg_advisory_lock(${MEMBERS_LOCK})`);
  const { rows } = await member.query<{ others: number }>(
    `SELECT count(*)::int AS others FROM pg_stat_activity
      WHERE application_name LIKE '${MEMBER_PREFIX}%' AND pid <> pg_backend_pid()`,
  );
  return rows[0]!.others === 0;
}

