/**
 * Job threads give way to the supervisor's main thread: when every core is busy with handlers, the
 * main thread must still get the CPU at once to claim, heartbeat and answer the debug socket. On
 * Linux each thread is a task with its own nice value, so this thread alone is lowered. Elsewhere,
 * or when it is not allowed, nothing changes.
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** Nice increment of job threads relative to the process. */
const NICE_INCREMENT = 5;

try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isInteger(tid) && tid > 0) setPriority(tid, Math.min(19, getPriority(tid) + NICE_INCREMENT));
} catch {
  // Not Linux, or /proc is not mounted: the threads keep the process's priority.
}
