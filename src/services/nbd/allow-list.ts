/**
 * The NBD server's allow-list of address ranges, apart from the server so
 * that checking a setting (setup appliance nbd-allow, appliance.ts) does not
 * load the server and its protocol modules on every start.
 */
import net, { BlockList } from 'node:net';

/** Builds the allow-list; a bad CIDR is refused with a sentence naming it. */
export function allowList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(cidr);
    const type = m && net.isIP(m[1]) === 6 ? 'ipv6' : 'ipv4';
    const bits = m?.[2] === undefined ? (type === 'ipv6' ? 128 : 32) : Number(m[2]);
    if (!m || !net.isIP(m[1]) || bits > (type === 'ipv6' ? 128 : 32)) throw new Error(`"${cidr}" is not an address range: give one like 192.168.1.0/24 or 127.0.0.1/32.`);
    list.addSubnet(m[1], bits, type);
  }
  return list;
}
