/**
 * The database one network hop away, for the scenarios that run there (network: 'hop'): a delay
 * proxy (delay-proxy.ts) in front of the benchmark's PostgreSQL, calibrated so that an idle round
 * trip through it costs ADDED_ROUND_TRIP_MS more than one straight to the server, as to a managed
 * database in the same zone. The proxy's own passage (two more sockets and a wake-up of its
 * thread) is part of that cost, so the hold per direction comes out below half of it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startDelayProxy, type DelayProxy } from './delay-proxy.ts';
import { median } from './stats.ts';

/** What a round trip should cost more through the hop than straight to the server. */
export const ADDED_ROUND_TRIP_MS = 1;
/** The hold per direction to start the calibration from. */
const FIRST_HOLD_MS = ADDED_ROUND_TRIP_MS / 2;
/** SELECT 1 calls per side and calibration step, and the pause between calls. */
const CALLS = 150;
const GAP_MS = 3;
const STEPS = 4;
/** Close enough. */
const TOLERANCE_MS = 0.08;

/** The calibrated hop. */
export interface NetworkHop {
  proxy: DelayProxy;
  /** The benchmark database's URL through the proxy. */
  url: string;
  /** Median SELECT 1 straight to the server and through the proxy, at the last calibration step, ms. */
  directP50Ms: number;
  hopP50Ms: number;
  /** The hold per direction calibration settled on, ms. */
  holdMs: number;
}

/** Starts the proxy in front of `databaseUrl`'s server and calibrates its hold; logs each step. */
export async function openNetworkHop(databaseUrl: string, log: (line: string) => void): Promise<NetworkHop> {
  const target = new URL(databaseUrl);
  const proxy = await startDelayProxy({ host: target.hostname, port: Number(target.port || 5432) }, FIRST_HOLD_MS);
  const url = proxy.proxiedUrl(databaseUrl);
  const direct = new pg.Client({ connectionString: databaseUrl });
  const viaHop = new pg.Client({ connectionString: url });
  await Promise.all([direct.connect(), viaHop.connect()]);
  try {
    let measured = { direct: 0, hop: 0 };
    for (let step = 1; step <= STEPS; step++) {
      measured = await compare(direct, viaHop);
      const added = measured.hop - measured.direct;
      log(
        `delay proxy: hold ${proxy.holdMs().toFixed(3)} ms each way -> SELECT 1 p50 ${measured.hop.toFixed(2)} ms ` +
          `through it, ${measured.direct.toFixed(2)} ms straight (+${added.toFixed(2)} ms)`,
      );
      if (Math.abs(added - ADDED_ROUND_TRIP_MS) <= TOLERANCE_MS) break;
      if (step < STEPS) proxy.setHoldMs(Math.max(0, proxy.holdMs() - (added - ADDED_ROUND_TRIP_MS) / 2));
    }
    return { proxy, url, directP50Ms: measured.direct, hopP50Ms: measured.hop, holdMs: proxy.holdMs() };
  } catch (error) {
    await proxy.close();
    throw error;
  } finally {
    await Promise.all([direct.end(), viaHop.end()]);
  }
}

/** Median SELECT 1 on each client, calls taking turns so drift hits both alike. */
async function compare(direct: pg.Client, viaHop: pg.Client): Promise<{ direct: number; hop: number }> {
  const times = { direct: [] as number[], hop: [] as number[] };
  for (let i = 0; i < CALLS; i++) {
    for (const [key, client] of [
      ['direct', direct],
      ['hop', viaHop],
    ] as const) {
      await sleep(GAP_MS);
      const start = performance.now();
      await client.query('SELECT 1');
      times[key].push(performance.now() - start);
    }
  }
  return { direct: median(times.direct), hop: median(times.hop) };
}
