/**
 * `server.workers: auto`: the CPUs this process may use, not the host's count. The
 * affinity mask (`taskset`, systemd's CPUAffinity) is what `os.availableParallelism()`
 * follows; a CPU quota (systemd's CPUQuota, a container's `--cpus`, Kubernetes limits) is
 * a cgroup's `cpu.max` (v2) or `cpu.cfs_quota_us` / `cpu.cfs_period_us` (v1), which Bun
 * does not read: it is read here, for this process's cgroup and each one above it, and
 * the smaller of the two counts wins (a quota of 1.5 CPUs is 2 workers).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

export interface CpuCount {
  /** Workers for `auto`. */
  count: number;
  /** CPUs the affinity mask allows. */
  affinity: number;
  /** CPUs the cgroup quota allows (rounded up), when there is one. */
  quota: number | undefined;
}

export function usableCpus(root = CGROUP_ROOT, cgroupFile = '/proc/self/cgroup'): CpuCount {
  const affinity = Math.max(1, availableParallelism());
  const quota = cgroupQuota(root, cgroupFile);
  return { count: Math.max(1, Math.min(affinity, quota ?? affinity)), affinity, quota };
}

/** The workers a setting stands for: `auto` resolved, a number as it is. */
export function resolveWorkers(setting: 'auto' | number, platform = process.platform): number {
  if (setting !== 'auto') return setting;
  // Elsewhere SO_REUSEPORT does not balance connections between processes (macOS gives them all to one).
  if (platform !== 'linux') return 1;
  return usableCpus().count;
}

/** The smallest CPU quota on the way from this process's cgroup to the root, in CPUs (rounded up). */
export function cgroupQuota(root: string, cgroupFile: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(cgroupFile, 'utf8');
  } catch {
    return undefined;
  }
  let smallest: number | undefined;
  const take = (cpus: number | undefined) => {
    if (cpus !== undefined && (smallest === undefined || cpus < smallest)) smallest = cpus;
  };
  for (const line of text.split('\n')) {
    // v2: "0::/system.slice/skybridge.service"; v1: "4:cpu,cpuacct:/docker/abc".
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    if (controllers === '') {
      for (const dir of ancestors(join(root, path), root)) take(readV2(join(dir, 'cpu.max')));
    } else if (controllers!.split(',').includes('cpu')) {
      for (const base of [join(root, 'cpu'), join(root, 'cpu,cpuacct')])
        for (const dir of ancestors(join(base, path), base)) take(readV1(dir));
    }
  }
  return smallest;
}

/** `dir` and each directory above it, up to and including `root`. */
function ancestors(dir: string, root: string): string[] {
  const out: string[] = [];
  for (let d = dir.replace(/\/+$/, ''); d.startsWith(root); d = d.slice(0, d.lastIndexOf('/'))) {
    out.push(d);
    if (d === root) break;
  }
  return out;
}

/** `cpu.max`: "<quota> <period>" or "max <period>". */
function readV2(file: string): number | undefined {
  const [quota, period] = readText(file)?.trim().split(/\s+/) ?? [];
  return cpusOf(quota, period);
}

function readV1(dir: string): number | undefined {
  return cpusOf(readText(join(dir, 'cpu.cfs_quota_us'))?.trim(), readText(join(dir, 'cpu.cfs_period_us'))?.trim());
}

function cpusOf(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  // "max" (v2) or -1 (v1): no quota.
  if (!(q > 0) || !(p > 0)) return undefined;
  return Math.max(1, Math.ceil(q / p));
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
