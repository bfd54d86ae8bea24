/**
 * The file Piscina loads in each worker thread (its `filename`). Piscina
 * imports it, awaits `default` when it is a promise, and calls the function
 * once per task. Plain JavaScript, so plain Node can load it before tsx is
 * registered in the thread.
 */
import './lower-priority.mjs';
import './register-tsx.mjs';

const { default: runJob } = await import('./thread.ts');

export default runJob;
