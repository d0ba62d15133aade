/** Assembles the service layer of one appliance (one SYNCSH_HOME). */
import { resolveHome, type Home } from './home.js';
import { loadAppliance, type ApplianceInfo } from './appliance.js';
import { Storage } from './storage/registry.js';
import { DRIVER_NAMES, isDriverName } from './datasets.js';
import type { DriverName } from './storage/driver.js';
import { AutoSyncService } from './auto-sync/index.js';
import { ReverseService } from './auto-sync/reverse.js';
import { FolderService } from './folders.js';
import { ZvolService } from './zvols.js';
import { ZvolImages } from './zvol-images.js';
import { PeerService, peerOptionsFromEnv } from './peer/index.js';
import { ConfigDamagedError } from './config-file.js';
import { ConsolePasswords } from './console-passwords.js';
import { FencingService } from './fencing.js';
import { CdpService } from './cdp/index.js';
import { mirrorOfZvol } from './cdp/model.js';

export interface Services {
  home: Home;
  appliance: ApplianceInfo;
  storage: Storage;
  autoSync: AutoSyncService;
  /** reverse-direction, split brain and orphans of services kept on two appliances */
  reverse: ReverseService;
  folders: FolderService;
  /** bound appliances and how to reach them (src/services/peer) */
  peers: PeerService;
  /** block volumes served over NBD */
  zvols: ZvolService;
  /** zvol images: export with a sha256, create a zvol from one (seeding) */
  zvolImages: ZvolImages;
  /** the SSH console's operator passwords and whether it takes them */
  consolePasswords: ConsolePasswords;
  /** fencing policy per peer and the fence runner (auto-cdp's peer loss) */
  fencing: FencingService;
  /** auto-cdp: live mirrors of zvols (src/services/cdp) */
  cdp: CdpService;
}

/** SYNCSH_DRIVERS=fs,zfs limits the drivers an appliance uses (default: all three) */
export function enabledDrivers(env: NodeJS.ProcessEnv): DriverName[] {
  if (!env.SYNCSH_DRIVERS) return [...DRIVER_NAMES];
  const names = env.SYNCSH_DRIVERS.split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const bad = names.find((n) => !isDriverName(n));
  if (bad) throw new Error(`SYNCSH_DRIVERS names an unknown driver "${bad}": use fs, zfs or btrfs, comma-separated.`);
  return names as DriverName[];
}

export function createServices(env: NodeJS.ProcessEnv = process.env): Services {
  const home = resolveHome(env);
  const appliance = loadAppliance(home, env);
  const storage = new Storage(home, enabledDrivers(env));
  const peers = new PeerService(home, appliance, peerOptionsFromEnv(env));
  const autoSync = new AutoSyncService(home, storage, appliance.defaultDriver, peers);
  const reverse = new ReverseService({ home, appliance, storage, peers, autoSync });
  const folders = new FolderService(storage, autoSync, appliance.defaultDriver);
  const zvols = new ZvolService(home, storage, folders, appliance.defaultDriver);
  const zvolImages = new ZvolImages(home, storage, zvols);
  const consolePasswords = new ConsolePasswords(home);
  const fencing = new FencingService(home, peers.store);
  const cdp = new CdpService(home, appliance, zvols, peers, appliance.defaultDriver);
  zvols.mirroredBy = (qualified) =>
    mirrorOfZvol(
      cdp.list().map((v) => v.config),
      qualified,
    )?.name ?? null;
  return { home, appliance, storage, autoSync, reverse, folders, peers, zvols, zvolImages, consolePasswords, fencing, cdp };
}

/**
 * The services for a shell: when a configuration file they need to start
 * (appliance.json) is damaged, a stand-in that says so on every use but the
 * home's paths, so that
 * `help` still works and every other command fails with that sentence.
 */
export function openServices(env: NodeJS.ProcessEnv = process.env): Services {
  try {
    return createServices(env);
  } catch (error) {
    if (!(error instanceof ConfigDamagedError)) throw error;
    const home = resolveHome(env);
    return new Proxy({} as Services, {
      get(_target, prop) {
        if (prop === 'then' || typeof prop === 'symbol') return undefined;
        if (prop === 'home') return home;
        throw error;
      },
    });
  }
}
