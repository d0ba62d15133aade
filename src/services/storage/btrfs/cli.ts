/** Running `btrfs` with translated errors, and reading subvolumes. */
import { constants } from 'node:fs';
import { access, lstat, rename, statfs } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../exec.js';
import { commandChanged, forgetMemo, runMemo } from '../query-cache.js';
import { BtrfsError, explainBtrfs } from './errors.js';

const BTRFS_SUPER_MAGIC = 0x9123683e;
/** every subvolume's root directory has this inode number (BTRFS_FIRST_FREE_OBJECTID) */
const SUBVOLUME_ROOT_INO = 256;

export interface SubvolumeShow {
  uuid: string;
  parentUuid: string | null;
  receivedUuid: string | null;
  createdAt: Date;
  /** transid of the last change to the subvolume's tree */
  generation: number;
  /** transid in which it was created */
  createdGeneration: number;
  readonly: boolean;
}

/**
 * rename(2) of a subvolume or a snapshot directory: what `btrfs subvolume
 * show` or `property get` answered for either path no longer stands, so the
 * run's reused answers (query-cache.ts) end here as after a command.
 */
export async function renamePath(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } finally {
    // a renamed directory takes the snapshots inside it along
    forgetMemo(showKey(from), true);
    forgetMemo(showKey(to), true);
    commandChanged();
  }
}

const showKey = (subvolume: string) => `btrfs-show:${path.resolve(subvolume)}`;
const forgetShow = (subvolume: string) => forgetMemo(showKey(subvolume));

export class BtrfsCli {
  constructor(readonly bin = 'btrfs') {}

  async btrfs(args: readonly string[]): Promise<string> {
    try {
      return await run(this.bin, args);
    } catch (error) {
      throw explainBtrfs(error);
    }
  }

  /**
   * A read-only snapshot's answer is kept for the run (runMemo): its UUIDs,
   * creation and generation do not change while it stays read-only, and
   * this process forgets it when it deletes, renames or unfreezes it. A run
   * lists a dataset's snapshots several times; each asked again was a spawn.
   */
  show(subvolume: string): Promise<SubvolumeShow> {
    return runMemo(
      showKey(subvolume),
      () => this.showNow(subvolume),
      (s) => s.readonly,
    );
  }

  private async showNow(subvolume: string): Promise<SubvolumeShow> {
    const fields = new Map<string, string>();
    for (const line of (await this.btrfs(['subvolume', 'show', subvolume])).split('\n').slice(1)) {
      const match = line.match(/^\s+([^:]+):\s*(.*)$/);
      if (!match) continue;
      if (match[1] === 'Snapshot(s)' || match[1] === 'Quota group') break;
      fields.set(match[1]!.trim(), match[2]!.trim());
    }
    const uuidOrNull = (value: string | undefined) => (!value || value === '-' ? null : value);
    const uuid = uuidOrNull(fields.get('UUID'));
    if (!uuid) throw new BtrfsError('other', `btrfs subvolume show gave no UUID for '${subvolume}'.`);
    return {
      uuid,
      parentUuid: uuidOrNull(fields.get('Parent UUID')),
      receivedUuid: uuidOrNull(fields.get('Received UUID')),
      createdAt: parseShowTime(fields.get('Creation time') ?? ''),
      generation: Number(fields.get('Generation')),
      createdGeneration: Number(fields.get('Gen at creation')),
      readonly: /\breadonly\b/.test(fields.get('Flags') ?? ''),
    };
  }

  async snapshot(source: string, target: string, readonly: boolean): Promise<void> {
    await this.btrfs(['subvolume', 'snapshot', ...(readonly ? ['-r'] : []), source, target]);
  }

  async deleteSubvolume(subvolume: string): Promise<void> {
    try {
      await this.btrfs(['subvolume', 'delete', subvolume]);
    } finally {
      forgetShow(subvolume);
    }
  }

  async setReadonly(subvolume: string, readonly: boolean): Promise<void> {
    try {
      await this.btrfs(['property', 'set', '-ts', subvolume, 'ro', String(readonly)]);
    } finally {
      forgetShow(subvolume);
    }
  }

  /**
   * btrfs answers a write check on a read-only subvolume with EROFS (its
   * permission hook), so a subvolume that passes access(W_OK) is writable and
   * no command is spawned; only EROFS (a read-only subvolume, or a read-only
   * mount, which `property get` calls writable) or another error asks btrfs.
   */
  async isReadonly(subvolume: string): Promise<boolean> {
    const writable = await access(subvolume, constants.W_OK).then(
      () => true,
      () => false,
    );
    if (writable) return false;
    return /ro=true/.test(await this.btrfs(['property', 'get', '-ts', subvolume, 'ro']));
  }
}

/** `2026-11-21 05:02:40 +0000` */
function parseShowTime(text: string): Date {
  const match = text.match(/^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) ([+-]\d\d)(\d\d)$/);
  return match ? new Date(`${match[1]}T${match[2]}${match[3]}:${match[4]}`) : new Date(Number.NaN);
}

export async function isOnBtrfs(target: string): Promise<boolean> {
  try {
    return (await statfs(target)).type === BTRFS_SUPER_MAGIC;
  } catch {
    return false;
  }
}

/** a subvolume root (cheap: no command runs) */
export async function isSubvolume(target: string): Promise<boolean> {
  try {
    const stats = await lstat(target);
    return stats.isDirectory() && stats.ino === SUBVOLUME_ROOT_INO && (await isOnBtrfs(target));
  } catch {
    return false;
  }
}
