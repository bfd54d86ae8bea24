/**
 * The ops servers a supervisor's config asks for (debug socket, HTTP API and dashboard, metrics),
 * built over what they read of the running supervisor: its runtime events, its actor tree, its
 * in-flight jobs, its pools. start.ts hands them to the supervisor as children; the supervisor
 * knows them only as actors.
 */
import type { EventEmitter } from 'eventemitter3';
import type pg from 'pg';
import type { AnyActor } from '../actors/kernel.ts';
import type { SupervisorConfig } from '../config.ts';
import type { PoolStats } from '../pool/pool.ts';
import type { InFlightView, RuntimeEvents } from '../runtime-events.ts';
import { ChartSampler } from './chart-sampler.ts';
import { DebugServer, type DebugLimits } from './debug-server.ts';
import { createDebugSource } from './debug-source.ts';
import type { HttpApi } from './http-routes.ts';
import { HttpServer } from './http-server.ts';

/** What the ops servers read of a running supervisor. */
export interface OpsRuntime {
  /** The supervisor's id. */
  id: string;
  /** spindle's version, a label of the metrics. */
  version: string;
  /** The runtime's events. */
  events: EventEmitter<RuntimeEvents>;
  /** The root of the actor tree: it re-emits the `actor:*` events of every actor. */
  root: AnyActor;
  /** The jobs in flight. */
  jobs(): InFlightView[];
  /** The thread pool's numbers. */
  pool(): PoolStats;
  /** Actors, in-flight jobs, pool and identity: the debug `snapshot` op and GET /api/snapshot. */
  snapshot(): unknown;
  /** The supervisor's database pools: `db` also counts the queues for the metrics. */
  db: pg.Pool;
  fastDb: pg.Pool;
  /** Opens the HTTP API's own access to the database. */
  openApi(): HttpApi;
}

/** The settings of the ops servers. */
export type OpsConfig = Pick<
  SupervisorConfig,
  'socket' | 'debugPort' | 'stateDir' | 'httpPort' | 'httpHost' | 'metricsPort' | 'metricsHost' | 'metricsSampleMs'
>;

/**
 * Loads what the servers `config` asks for need, then returns a builder of fresh servers, in the
 * order they are to start (and stop in reverse): the debug socket, the charts' sampler and the HTTP
 * API, the metrics.
 */
export async function opsServers(
  config: OpsConfig,
  debugLimits?: Partial<DebugLimits>,
): Promise<(runtime: OpsRuntime) => AnyActor[]> {
  // Loaded only when asked for: prom-client is a quarter of spindle's import time.
  const metrics = config.metricsPort === undefined ? null : await import('./metrics.ts');
  return (runtime) => {
    const servers: AnyActor[] = [];
    const source = createDebugSource({
      id: runtime.id,
      snapshot: runtime.snapshot,
      jobs: runtime.jobs,
      pool: runtime.pool,
      root: runtime.root,
      events: runtime.events,
    });
    if (config.socket !== false || config.debugPort !== undefined) {
      servers.push(
        new DebugServer({
          source,
          socketPath: config.socket === false ? null : config.socket,
          tcpPort: config.debugPort ?? null,
          stateDir: config.stateDir,
          limits: debugLimits,
        }),
      );
    }
    let http: HttpServer | null = null;
    if (config.httpPort !== undefined) {
      // The dashboard's charts: samples kept from the start, so a page opened later has a past.
      const charts = new ChartSampler({ events: runtime.events, db: runtime.db });
      servers.push(charts);
      http = new HttpServer({
        openApi: runtime.openApi,
        stateDir: config.stateDir,
        port: config.httpPort,
        host: config.httpHost,
        snapshot: runtime.snapshot,
        charts: (windowMs) => charts.view(windowMs),
        source,
      });
      servers.push(http);
    }
    if (metrics && config.metricsPort !== undefined) {
      const { db, fastDb } = runtime;
      servers.push(
        new metrics.Metrics({
          supervisorId: runtime.id,
          version: runtime.version,
          events: runtime.events,
          root: runtime.root,
          pool: runtime.pool,
          dbPools: () => {
            const pools = [
              { name: 'main', pool: db },
              { name: 'fast', pool: fastDb },
            ];
            const api = http?.dbPool;
            return api ? [...pools, { name: 'api', pool: api }] : pools;
          },
          db,
          sampleMs: config.metricsSampleMs,
          port: config.metricsPort,
          host: config.metricsHost,
        }),
      );
    }
    return servers;
  };
}
