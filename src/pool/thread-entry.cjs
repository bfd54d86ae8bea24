/**
 * The file Piscina loads in each worker thread. Piscina first tries `require()` on it: for an ES
 * module with top-level await, Node 20.19+ may then try require(esm), which has aborted the whole
 * process with a V8 fatal error ("IsGraphAsync must be used on an instantiated module"). So the file
 * Piscina requires is CommonJS, and the real entry (thread-entry.mjs) is imported from here, at
 * thread start, so the first job does not wait for it.
 */
'use strict';

const { MessageChannel, parentPort, threadId } = require('node:worker_threads');

// The thread's channel to the pool (PortHandoff in protocol.ts), made here because Piscina requires
// this file before the thread takes any task. Piscina may hand the pool a task's result (on its own
// port) before this message; the pool then waits for the channel (ThreadChannels.whenReady).
const { port1: toPool, port2 } = new MessageChannel();
parentPort.postMessage({ type: 'spindle:port', threadId, port: port2 }, [port2]);

const loaded = import('./thread-entry.mjs');
// A load failure surfaces on the first job, as that job's error; never as an unhandled rejection.
loaded.catch(() => {});

module.exports = async function runJob(task) {
  // START_TASK (protocol.ts): it only made Piscina start this thread.
  if (task.mode === 'start') return null;
  const { default: run } = await loaded;
  return run(task, toPool);
};
