/**
 * A network namespace joined to this host by a veth pair, for the tests of a host cut off from the
 * network: a process started in it (`launcher`) reaches the host only over the pair, and `cut()`
 * brings the host's end down, so its packets go nowhere and its connections hang (no reset, as when
 * a host drops off the network). Needs root and iproute2's `ip`; `unavailable()` says why not.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { alive } from './processes.ts';

const PREFIX = 'spindle-cut-';

/** Why network namespaces cannot be made here, or null when they can. */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'making network namespaces needs root';
  const probe = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (probe.error) return `iproute2's ip is not installed (${probe.error.message})`;
  if (probe.status !== 0) return `ip netns does not work here: ${probe.stderr.trim()}`;
  return null;
}

/** A namespace with a veth pair to the host: `hostAddress` on the host's end, `address` inside. */
export class NetworkNamespace {
  readonly name: string;
  readonly hostAddress: string;
  readonly address: string;
  readonly #hostEnd: string;
  #removed = false;

  private constructor(name: string, hostEnd: string, hostAddress: string, address: string) {
    this.name = name;
    this.#hostEnd = hostEnd;
    this.hostAddress = hostAddress;
    this.address = address;
  }

  /**
   * Makes one with names unique to this run (the pid is in the namespace's name, so a later run
   * removes what a killed one left). On failure, whatever was made is removed again.
   */
  static create(): NetworkNamespace {
    removeStale();
    const tag = randomBytes(3).toString('hex');
    const [hostAddress, address] = freeSubnet();
    const ns = new NetworkNamespace(`${PREFIX}${process.pid}-${tag}`, `sc${tag}h`, hostAddress, address);
    const inner = `sc${tag}n`;
    try {
      ip('netns', 'add', ns.name);
      ip('link', 'add', ns.#hostEnd, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', inner, 'netns', ns.name);
      ip('addr', 'add', `${hostAddress}/30`, 'dev', ns.#hostEnd);
      ip('link', 'set', ns.#hostEnd, 'up');
      ip('-n', ns.name, 'addr', 'add', `${address}/30`, 'dev', inner);
      ip('-n', ns.name, 'link', 'set', inner, 'up');
      ip('-n', ns.name, 'link', 'set', 'lo', 'up');
    } catch (err) {
      ns.remove();
      throw err;
    }
    return ns;
  }

  /** The command prefix that runs a program inside the namespace. */
  get launcher(): string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  /** Cuts the link: the host's end goes down; nothing passes either way, and nothing is reset. */
  cut(): void {
    ip('link', 'set', this.#hostEnd, 'down');
  }

  /** Brings the link back. */
  restore(): void {
    ip('link', 'set', this.#hostEnd, 'up');
  }

  /** Removes the namespace and the pair (idempotent; safe after a failed create). */
  remove(): void {
    if (this.#removed) return;
    this.#removed = true;
    // Deleting the namespace deletes its end of the pair, and with it the host's end.
    spawnSync('ip', ['netns', 'del', this.name]);
    spawnSync('ip', ['link', 'del', this.#hostEnd]);
  }
}

function ip(...args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`ip ${args.join(' ')} failed: ${stderr || String(err)}`);
  }
}

/** Namespaces left by runs whose process is gone (killed before their cleanup ran). */
function removeStale(): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const pid = Number(name.slice(PREFIX.length).split('-')[0]);
    if (name.startsWith(PREFIX) && Number.isInteger(pid) && !alive(pid)) spawnSync('ip', ['netns', 'del', name]);
  }
}

/** The two addresses of a /30 in a 10.213.x.0/24 that no interface here uses. */
function freeSubnet(): [string, string] {
  const used = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
  for (let tries = 0; tries < 100; tries++) {
    const prefix = `10.213.${randomBytes(1)[0]!}.`;
    if (!used.includes(prefix)) return [`${prefix}1`, `${prefix}2`];
  }
  throw new Error('no free /24 in 10.213.0.0/16');
}
