/**
 * The entry of each worker thread, imported by thread-entry.cjs (the file Piscina loads).
 */
import './lower-priority.mjs';
import { importOwn } from './own-code.mjs';

const { default: runJob } = await importOwn('thread');

export default runJob;
