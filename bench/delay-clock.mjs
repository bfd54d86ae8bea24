// The delay proxy's clock thread (bench/delay-proxy.ts): Node's timers fire on whole milliseconds,
// Atomics.wait takes fractional ones. It sleeps until the deadline in shared memory, then wakes the
// proxy's thread with a message; a new deadline (the generation bumped) wakes it early.
import { parentPort, workerData } from 'node:worker_threads';

const generation = new Int32Array(workerData.shared, 0, 1);
const deadline = new Float64Array(workerData.shared, 8, 1);
/** Never sleep longer than this, so a terminate() or a missed wake-up costs at most that. */
const MAX_SLEEP_MS = 50;

const now = () => performance.timeOrigin + performance.now();

for (;;) {
  const seen = Atomics.load(generation, 0);
  const wait = deadline[0] - now();
  if (wait <= 0) {
    parentPort.postMessage(0);
    Atomics.wait(generation, 0, seen, MAX_SLEEP_MS);
  } else {
    Atomics.wait(generation, 0, seen, Math.min(wait, MAX_SLEEP_MS));
  }
}
