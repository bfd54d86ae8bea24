/**
 * The entry of each worker thread, imported by thread-entry.cjs (the file
 * Piscina loads). Plain JavaScript, so plain Node can load it before tsx is
 * registered in the thread.
 */
import './lower-priority.mjs';
import './register-tsx.mjs';

const { default: runJob } = await import('./thread.ts');

export default runJob;
