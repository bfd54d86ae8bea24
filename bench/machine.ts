/** The machine a run was measured on. */
import os from 'node:os';

/** What the report says about the machine. */
export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  /** The 1-minute load average when the benchmark started: other work on the machine makes figures noisy. */
  loadAtStart: number;
}

/** The machine, read now (call it before the first run, for a meaningful loadAtStart). */
export function machineInfo(): MachineInfo {
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAtStart: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}
