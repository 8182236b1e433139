/**
 * Sets of IP addresses and CIDR ranges (`10.0.0.0/8`, `::1`), matched with node:net's
 * BlockList. An IPv4 address seen as IPv4-mapped IPv6 (`::ffff:10.1.2.3`, what a
 * dual-stack socket reports) matches the IPv4 entries.
 */
import { BlockList, isIP } from 'node:net';

/** Whether `entry` is an IP address or a CIDR range (`address/prefix length`). */
export function isIpOrCidr(entry: string): boolean {
  return parse(entry) !== undefined;
}

function parse(entry: string): { address: string; prefix: number | undefined; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (slash < 0) return { address, prefix: undefined, family };
  const bits = entry.slice(slash + 1);
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > (version === 4 ? 32 : 128)) return undefined;
  return { address, prefix, family };
}

export class IpRanges {
  private readonly list = new BlockList();

  /** `entries` must pass isIpOrCidr (the config schema checks them). */
  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const p = parse(entry);
      if (!p) throw new Error(`not an IP address or CIDR range: ${entry}`);
      if (p.prefix === undefined) this.list.addAddress(p.address, p.family);
      else this.list.addSubnet(p.address, p.prefix, p.family);
    }
  }

  has(address: string): boolean {
    const version = isIP(address);
    if (version === 0) return false;
    return this.list.check(address, version === 4 ? 'ipv4' : 'ipv6');
  }
}
