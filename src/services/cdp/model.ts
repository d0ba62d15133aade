/**
 * auto-cdp mirrors: what a mirror is (README.md in this folder). A mirror is
 * kept on both appliances: on the master with its targets, on each target
 * as a slave naming its master. Pure data and checks; no I/O here.
 */

export const MIRROR_MODES = ['sync', 'async'] as const;
export type MirrorMode = (typeof MIRROR_MODES)[number];

export type MirrorRole = 'master' | 'slave';

/**
 * A target's state (DataKeeper's mirror states): `syncing` while its copy is
 * brought level (progress in `synced`), `mirroring` when every write reaches
 * it, `logging` while it is away (its dirty map records what it misses),
 * `paused` by the operator (the same, on purpose), `broken` with a reason.
 */
export type TargetState = 'syncing' | 'mirroring' | 'logging' | 'paused' | 'broken';

export interface MirrorTarget {
  /** the peer's appliance id */
  host: string;
  /** the target zvol on that appliance, qualified (fs:tank/vm1) */
  zvol: string;
  state: TargetState;
  /** why it is broken or logging; null otherwise */
  reason: string | null;
  /** the operator paused it: it stays paused across outages and restarts until resumed */
  paused: boolean;
  /**
   * the target's copy is unknown (new target without --no-full-sync's compare
   * done yet, or a copy that cannot be trusted): its first sync compares or
   * sends every allocated chunk, not only the dirty ones
   */
  fullSync: 'all' | 'compare' | 'none';
  addedAt: string;
}

export interface MirrorConfig {
  /** instance name, as auto-sync's (`tank-vm1-000`) */
  name: string;
  /** the zvol on this appliance, qualified */
  zvol: string;
  /** bytes; every copy has this size */
  size: number;
  mode: MirrorMode;
  role: MirrorRole;
  /** raised by every role change (engineer fence's roles.ts); the higher epoch wins */
  epoch: number;
  /** the slave's view: who the master is and its zvol; null on the master */
  master: { host: string; zvol: string } | null;
  /** the master's view: where every write goes; empty on a slave */
  targets: MirrorTarget[];
  description: string;
  /** `--peer-timeout`: a peer not answering this long is lost (heartbeat.ts); absent: the default */
  peerTimeoutMs?: number;
  createdAt: string;
}

export function parseMode(raw: string, label = 'the mode'): MirrorMode {
  if ((MIRROR_MODES as readonly string[]).includes(raw)) return raw as MirrorMode;
  throw new Error(`The value of ${label} is sync or async, not "${raw}".`);
}

/** the copy a target keeps of the master's mirror: the same service, seen from there */
export function slaveView(master: MirrorConfig, masterHost: string, target: MirrorTarget): MirrorConfig {
  return {
    ...master,
    zvol: target.zvol,
    role: 'slave',
    master: { host: masterHost, zvol: master.zvol },
    targets: [],
  };
}

/** the mirror (of this appliance) that uses a zvol, as master or target, or undefined */
export function mirrorOfZvol(mirrors: readonly MirrorConfig[], zvol: string): MirrorConfig | undefined {
  return mirrors.find((m) => m.zvol === zvol);
}

/** one-word status of a target for tables: `syncing 42%`, `broken (why)` */
export function targetLabel(t: MirrorTarget, syncedPercent: number | null): string {
  if (t.paused) return 'paused';
  if (t.state === 'syncing') return `syncing ${syncedPercent ?? 0}%`;
  if (t.state === 'broken' || t.state === 'logging') return t.reason ? `${t.state} (${t.reason})` : t.state;
  return t.state;
}

export const MIRROR_PROPERTIES = ['description', 'peer_timeout'] as const;

/** a peer not answering this long is lost, where the mirror sets no --peer-timeout */
export const DEFAULT_PEER_TIMEOUT_MS = 5_000;

/** `--peer-timeout` / `property peer_timeout`: seconds (a fraction allowed), 1 to 300 */
export const PEER_TIMEOUT_RANGE = { min: 1, max: 300 } as const;

/** seconds as typed -> milliseconds, or a sentence naming the bad value */
export function parsePeerTimeout(raw: string, label = 'the peer timeout'): number {
  const n = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!(n >= PEER_TIMEOUT_RANGE.min && n <= PEER_TIMEOUT_RANGE.max)) {
    throw new Error(`The value of ${label} is a number of seconds from ${PEER_TIMEOUT_RANGE.min} to ${PEER_TIMEOUT_RANGE.max}, not "${raw}".`);
  }
  return Math.round(n * 1000);
}
