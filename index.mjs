// The package entry for plain Node: spindle ships TypeScript, loaded through tsx.
import { register } from 'tsx/esm/api';

if (!globalThis.__spindleTsx) {
  globalThis.__spindleTsx = true;
  register();
}
const spindle = await import('./src/index.ts');
export const {
  createClient,
  Client,
  startSupervisor,
  SpindleError,
  ValidationError,
  PermanentError,
  NotFoundError,
  TimeoutError,
  StateError,
  NonDeterminismError,
  WorkflowBoundsError,
  WorkflowJobError,
  WorkflowStepError,
  migrate,
  parseCron,
  nextTick,
  VERSION,
} = spindle;
