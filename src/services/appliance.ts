/**
 * This appliance's identity: its id (shown in the prompt and to peers; may
 * start with a digit), hostname and version, kept in appliance.json.
 */
import { ConfigFile } from './config-file.js';
import os from 'node:os';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Home } from './home.js';
import { LOCAL_ACCESS, type Access } from './access.js';
import type { DriverName } from './storage/driver.js';
import { allowList } from './nbd/allow-list.js';
import { parseHostPort, type HostPort } from './host-port.js';
import { PACKAGE_JSON } from './installation.js';

export interface ApplianceInfo {
  id: string;
  hostname: string;
  version: string;
  defaultDriver: DriverName;
  /** run with every alert (argv), or null */
  alertCommand: string[] | null;
  /** where the NBD server also listens on TCP, or null (the unix socket only) */
  nbdListen: HostPort | null;
  /** TCP clients allowed to connect (CIDRs) */
  nbdAllow: string[];
}

type ApplianceFile = { id: string; defaultDriver: DriverName; alertCommand: string[] | null; nbdListen: HostPort | null; nbdAllow: string[] };

/** until `setup appliance nbd-allow` says otherwise: this host only */
export const DEFAULT_NBD_ALLOW = ['127.0.0.1/32', '::1/128'];

export const VERSION: string = (() => {
  try {
    return JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')).version;
  } catch {
    return '0.0.0';
  }
})();

export function validApplianceId(id: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(id);
}

function store(home: Home): ConfigFile<ApplianceFile> {
  return new ConfigFile<ApplianceFile>({ cwd: home.config, configName: 'appliance', projectName: 'syncsh' });
}

/** the id a new home takes: the host name, made valid */
export function defaultApplianceId(): string {
  return os
    .hostname()
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, '-');
}

export function loadAppliance(home: Home, env: NodeJS.ProcessEnv = process.env): ApplianceInfo {
  const conf = store(home);
  let id = conf.get('id');
  if (!id) {
    const wanted = env.SYNCSH_APPLIANCE_ID || defaultApplianceId();
    id = validApplianceId(wanted) ? wanted : `appliance-${randomBytes(3).toString('hex')}`;
    conf.set('id', id);
  }
  if (!conf.get('defaultDriver')) conf.set('defaultDriver', 'fs');
  return { id, hostname: os.hostname(), version: VERSION, defaultDriver: conf.get('defaultDriver'), alertCommand: conf.get('alertCommand') ?? null, ...nbdSettings(home) };
}

/** the NBD settings alone, as the daemon rereads them when appliance.json changes */
export function nbdSettings(home: Home): { nbdListen: HostPort | null; nbdAllow: string[] } {
  const conf = store(home);
  return { nbdListen: conf.get('nbdListen') ?? null, nbdAllow: conf.get('nbdAllow') ?? DEFAULT_NBD_ALLOW };
}

/** `setup appliance nbd-listen ADDR:PORT | none` */
export function setNbdListen(home: Home, text: string): HostPort | null {
  if (text === 'none') {
    store(home).set('nbdListen', null);
    return null;
  }
  const hp = parseHostPort(text);
  if (!hp || hp.port === 0 || !net.isIP(hp.host)) throw new Error(`nbd-listen takes an IP address and a port, such as 0.0.0.0:10809, or none; not "${text}".`);
  store(home).set('nbdListen', hp);
  return hp;
}

/** `setup appliance nbd-allow CIDR…`: every range is checked before any is kept */
export function setNbdAllow(home: Home, cidrs: string[]): string[] {
  if (!cidrs.length) throw new Error('nbd-allow takes at least one address range, such as 192.168.1.0/24.');
  allowList(cidrs); // throws naming the bad range
  store(home).set('nbdAllow', cidrs);
  return cidrs;
}

/**
 * Set (or clear, with an empty argv) the command run with every alert. The
 * daemon runs it as root: `access` decides whether this session may name
 * that program (the console: only from the allowed directories).
 */
export function setAlertCommand(home: Home, argv: string[], access: Access = LOCAL_ACCESS, info?: ApplianceInfo): string[] | null {
  if (argv.length && !argv[0].startsWith('/')) {
    throw new Error(`The alert command must be given by its absolute path, not "${argv[0]}": it runs from the daemon, whose PATH may differ.`);
  }
  const value = argv.length ? [access.program(argv[0]), ...argv.slice(1)] : null;
  store(home).set('alertCommand', value);
  // a long-running process (the console) shows what it just set
  if (info) info.alertCommand = value;
  return value;
}

/**
 * Change this appliance's id (two homes on one machine start with the same
 * one). Refused once it is bound to another appliance, in either direction:
 * that appliance knows it by its id.
 */
export function setApplianceId(home: Home, info: ApplianceInfo, id: string, boundTo: string[]): string {
  if (!validApplianceId(id)) throw new Error(`"${id}" is not a valid appliance id: 1 to 63 letters, digits, "_", "." or "-", starting with a letter or a digit.`);
  if (id === info.id) return id;
  if (boundTo.length) {
    throw new Error(
      `The appliance id cannot change while this appliance is bound to ${boundTo.join(', ')}: they know it as ${info.id}. Unbind them first ('setup network ssh-unbind HOST'), change the id, then bind again. Nothing was changed.`,
    );
  }
  store(home).set('id', id);
  info.id = id;
  return id;
}
