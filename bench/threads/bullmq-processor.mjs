/**
 * The file BullMQ loads in its sandbox threads. Plain JavaScript: BullMQ's
 * threads do not get the tsx hooks of the process, so this one registers tsx
 * in its own thread before it loads the TypeScript processor.
 */
import { register } from 'tsx/esm/api';

register();
const { default: processor } = await import('./bullmq-processor.ts');

export default processor;
