/**
 * The flow-control routes of the HTTP API (http-routes.ts lists them with the others): limits and
 * pauses of a job type or queue, set for every supervisor through the Client's calls.
 *
 *   GET    /api/limits                     { limits: [...] }: every scope with limits or a pause
 *   PUT    /api/limits/:kind/:name         a JSON object of limits, merged over what is set; null
 *                                          lifts one -> { limit }, the scope after
 *   DELETE /api/limits/:kind/:name         drops what operators set -> { scope, cleared }
 *   POST   /api/limits/:kind/:name/pause   -> { scope, paused: true, changed }
 *   POST   /api/limits/:kind/:name/resume  -> { scope, paused: false, changed }
 * `:kind` is `type` or `queue`. Bad limits are 400 naming the field (`body.rateLimit.intervalMs`),
 * and nothing is written.
 */
import { ValidationError } from '../errors.ts';
import { checkFlowLimits, parseScope, type LimitScope } from '../limits.ts';
import { describe } from '../validate.ts';
import type { HttpApi } from './http-routes.ts';
import { readJson, sendJson, type RequestContext, type Route } from './http-wire.ts';

/** What the limit routes are served from. */
export interface LimitRoutesDeps {
  /** The open API (throws a 503 while the server is not running). */
  api: () => HttpApi;
  /** Largest request body, in bytes. */
  maxBodyBytes: number;
}

/** The flow-control routes, in match order. */
export function limitRoutes(deps: LimitRoutesDeps): Route[] {
  const scopePath = ['api', 'limits', ':kind', ':name'];
  const pauseOrResume = (paused: boolean) => async ({ req, res, params }: RequestContext) => {
    await readJson(req, deps.maxBodyBytes, true);
    const scope = scopeOf(params);
    const changed = paused ? await deps.api().pause(scope) : await deps.api().resume(scope);
    sendJson(res, 200, { scope, paused, changed });
  };
  return [
    { method: 'GET', path: ['api', 'limits'], run: async ({ res }) => sendJson(res, 200, { limits: await deps.api().limits() }) },
    {
      method: 'PUT',
      path: scopePath,
      run: async ({ req, res, params }) => {
        const scope = scopeOf(params);
        // Checked here to name the fields as the request has them; the Client checks them again.
        const limits = checkFlowLimits('body', await readJson(req, deps.maxBodyBytes), scope.kind, true);
        if (Object.keys(limits).length === 0) throw new ValidationError('body', 'sets nothing: give at least one limit, such as { "globalConcurrency": 3 }');
        sendJson(res, 200, { limit: await deps.api().setLimits(scope, limits) });
      },
    },
    {
      method: 'DELETE',
      path: scopePath,
      run: async ({ req, res, params }) => {
        await readJson(req, deps.maxBodyBytes, true);
        const scope = scopeOf(params);
        sendJson(res, 200, { scope, cleared: await deps.api().clearLimits(scope) });
      },
    },
    { method: 'POST', path: [...scopePath, 'pause'], run: pauseOrResume(true) },
    { method: 'POST', path: [...scopePath, 'resume'], run: pauseOrResume(false) },
  ];
}

/** The scope a path names. */
function scopeOf(params: Record<string, string>): LimitScope {
  const { kind, name } = params;
  if (kind !== 'type' && kind !== 'queue') throw new ValidationError('kind', `must be type or queue, got ${describe(kind)}`);
  return parseScope('name', `${kind}:${name}`);
}
