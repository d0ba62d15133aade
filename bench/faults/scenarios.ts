/** Every scenario of the campaign, in the order they run; `ciScenarios` is the reduced set CI runs. */
import type { Scenario } from './campaign.js';
import { killScenario } from './kill.js';
import { damageScenario } from './damage.js';
import { fullDiskScenario } from './full-disk.js';
import { linkScenario } from './link.js';
import { failbackCutScenario, reverseScenario } from './reverse.js';
import { nbdKillScenario } from './nbd-kill.js';
import { zvolKillScenario } from './zvol-kill.js';
import { cdpFailoverScenario } from './cdp-failover.js';
import { powerCutScenario } from './power-cut.js';

export function allScenarios(): Scenario[] {
  return [
    killScenario('local'),
    killScenario('peer'),
    damageScenario(),
    damageScenario('zfs'),
    damageScenario('btrfs'),
    fullDiskScenario(),
    linkScenario(),
    linkScenario('zfs'),
    linkScenario('btrfs'),
    killScenario('local', 'zfs'),
    killScenario('peer', 'zfs'),
    killScenario('local', 'btrfs'),
    killScenario('peer', 'btrfs'),
    fullDiskScenario('zfs'),
    fullDiskScenario('btrfs'),
    fullDiskScenario('zfs', 'peer'),
    fullDiskScenario('btrfs', 'peer'),
    reverseScenario(),
    reverseScenario('zfs'),
    reverseScenario('btrfs'),
    failbackCutScenario(),
    failbackCutScenario('zfs'),
    failbackCutScenario('btrfs'),
    nbdKillScenario(),
    zvolKillScenario(),
    cdpFailoverScenario(),
    powerCutScenario(),
    nbdKillScenario('power-cut'),
    cdpFailoverScenario('power-cut'),
  ];
}

/**
 * What CI runs (test/faults/campaign.test.ts), a few minutes in all: the
 * first five fs scenarios, the two zvol ones (the NBD daemon and a zvol's run
 * killed), the auto-cdp failover, the two power cuts, and of the zfs-fuse, btrfs and reverse ones the
 * cheapest that still cross each driver's receive (killed, and fed a damaged
 * stream: seconds each) and the hand-over (one
 * trial of kill-9/zfs/peer, full-disk/zfs or failback-cut takes a minute
 * or more under load).
 */
export function ciScenarios(): Scenario[] {
  const wanted = new Set([
    'kill-9/fs/local',
    'kill-9/fs/peer',
    'damaged-stream/fs/local',
    'full-disk/fs/peer',
    'link-cut-stall/fs/ssh',
    'kill-9/zfs/local',
    'kill-9/btrfs/local',
    'damaged-stream/zfs/local',
    'damaged-stream/btrfs/local',
    'reverse-dr/fs/peer',
    'kill-9/nbd-daemon/fs',
    'kill-9/fs-zvol/local',
    'failover/cdp-sync/fs',
    'power-cut/fs/local',
    'power-cut/nbd-daemon/fs',
  ]);
  return allScenarios().filter((s) => wanted.has(s.name));
}
