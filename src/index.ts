/** spindle's public API. */
export { createClient, Client } from './client.ts';
export type { ClientOptions, EnqueueCallOptions, JobSpec, ListFilter, CancelOutcome, JobUpdate, SupervisorInfo, ScopeArg } from './client.ts';
export type { FlowLimits, FlowLimitsUpdate, RateLimit, LimitScope } from './limits.ts';
export type { LimitRow } from './db/limits.ts';
export { startSupervisor, VERSION } from './start.ts';
export type { StartOptions, SupervisorHandle, RuntimeSnapshot } from './start.ts';
export type { Pooler, SupervisorOptions } from './config.ts';
export type { EnqueueOptions } from './validate.ts';
export type { Job, JobState, Attempt, AttemptOutcome, JobError } from './job.ts';
export type { JobContext } from './context.ts';
export { migrate } from './db/migrate.ts';
export { SpindleError, ValidationError, PermanentError, NotFoundError, TimeoutError, StateError, SchemaError } from './errors.ts';
export type { WorkflowContext, StepOptions, WorkflowJobOptions, EventResult, WaitOptions } from './workflows/types.ts';
export type { WorkflowRun, WorkflowStep, WorkflowState, StartWorkflowOptions, WorkflowListFilter, WorkflowCancelOutcome } from './workflows/client.ts';
export type { WorkflowLimits } from './workflows/limits.ts';
export { parseCron, nextTick } from './workflows/cron.ts';
export { NonDeterminismError, WorkflowBoundsError, WorkflowJobError, WorkflowStepError } from './errors.ts';
