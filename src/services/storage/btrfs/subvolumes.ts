/**
 * Datasets as subvolumes: list, create, destroy, and "mount".
 *
 * btrfs has no per-subvolume mount: a subvolume is reachable wherever its
 * filesystem is mounted. unmount therefore fences writes by making the live
 * subvolume read-only, and mount makes it writable again; `mounted` reports
 * exactly that (writable), which is what the reverse-direction hand-over
 * needs from an unmount.
 */
import { readdir, readFile, rm, stat, truncate, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { CreateDatasetOptions, DatasetInfo } from '../driver.js';
import { isOnBtrfs, isSubvolume, type BtrfsCli } from './cli.js';
import { BtrfsError } from './errors.js';
import { checkSubvolumePath, HOLDS_DIR, isReserved, snapshotDir, volumeFile } from './layout.js';

export async function getDataset(cli: BtrfsCli, name: string): Promise<DatasetInfo | null> {
  checkSubvolumePath(name);
  const exists = await stat(name).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await requireBtrfsParent(name);
    return null;
  }
  if (!(await isSubvolume(name))) throw new BtrfsError('not-subvolume', `'${name}' is not a btrfs subvolume.`);
  const readonly = await cli.isReadonly(name);
  const volume = await stat(volumeFile(name)).catch(() => null);
  const info: DatasetInfo = {
    name,
    kind: volume ? 'volume' : 'filesystem',
    mountpoint: volume || readonly ? null : name,
    mounted: !readonly,
    readonly,
  };
  if (volume) info.volsize = volume.size;
  return info;
}

export async function requireDataset(cli: BtrfsCli, name: string): Promise<DatasetInfo> {
  const found = await getDataset(cli, name);
  if (!found) throw new BtrfsError('missing', `The subvolume '${name}' does not exist.`);
  return found;
}

/** the directory a dataset lives in must exist on btrfs */
async function requireBtrfsParent(name: string): Promise<void> {
  const parent = path.dirname(name);
  if (
    !(await stat(parent).then(
      (s) => s.isDirectory(),
      () => false,
    ))
  ) {
    throw new BtrfsError('missing', `The directory '${parent}' does not exist.`);
  }
  if (!(await isOnBtrfs(parent))) throw new BtrfsError('not-btrfs', `The directory '${parent}' is not on a btrfs filesystem.`);
}

export async function listDatasets(cli: BtrfsCli, under?: string): Promise<DatasetInfo[]> {
  const roots = under === undefined ? await btrfsMounts() : [checkSubvolumePath(under)];
  const names = new Set<string>();
  for (const root of roots) {
    if (!(await isOnBtrfs(root))) {
      if (under === undefined) continue; // unmounted since /proc was read
      throw new BtrfsError('not-btrfs', `'${root}' is not on a btrfs filesystem.`);
    }
    const found = await subvolumesUnder(cli, root).catch((error: unknown) => {
      if (under === undefined) return [];
      throw error;
    });
    for (const subvolume of found) {
      const relative = path.relative(root, subvolume);
      if (!relative.split('/').some(isReserved)) names.add(subvolume);
    }
  }
  const infos: DatasetInfo[] = [];
  for (const name of [...names].sort()) {
    const info = await getDataset(cli, name).catch(() => null);
    if (info) infos.push(info);
  }
  return infos;
}

/**
 * Every subvolume at or below `root` (the driver's own included), as
 * absolute paths. `btrfs subvolume list MOUNT` names the subvolumes beneath
 * the mounted one relative to it, and the others from the top level, with
 * nothing to tell the two apart; so "beneath" is decided from the parent ids.
 */
export async function subvolumesUnder(cli: BtrfsCli, root: string): Promise<string[]> {
  const mount = await mountOf(root);
  if (!mount) throw new BtrfsError('not-btrfs', `'${root}' is not on a mounted btrfs filesystem.`);
  const mountedId = Number(await cli.btrfs(['inspect-internal', 'rootid', mount]));
  const parentOf = new Map<number, number>();
  const listed: Array<{ id: number; path: string }> = [];
  for (const line of (await cli.btrfs(['subvolume', 'list', mount])).split('\n')) {
    const match = line.match(/^ID (\d+) gen \d+ top level (\d+) path (.*)$/);
    if (!match) continue;
    parentOf.set(Number(match[1]), Number(match[2]));
    listed.push({ id: Number(match[1]), path: match[3]! });
  }
  const beneathMount = (id: number) => {
    for (let at = parentOf.get(id); at !== undefined; at = parentOf.get(at)) if (at === mountedId) return true;
    return false;
  };
  const found = listed
    .filter(({ id }) => beneathMount(id))
    .map(({ path: relative }) => path.join(mount, relative))
    .filter((absolute) => absolute === root || absolute.startsWith(`${root}/`));
  return found.sort();
}

/** the btrfs mount point a path is under */
export async function mountOf(target: string): Promise<string | null> {
  const candidates = (await btrfsMounts()).filter((mount) => target === mount || target.startsWith(mount === '/' ? '/' : `${mount}/`));
  return candidates.sort((a, b) => b.length - a.length)[0] ?? null;
}

/** where btrfs filesystems are mounted */
export async function btrfsMounts(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const unescape = (value: string) => value.replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  const targets = text
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[fields.indexOf('-') + 1] === 'btrfs')
    .map((fields) => unescape(fields[4]!));
  return [...new Set(targets)];
}

export async function createDataset(cli: BtrfsCli, name: string, opts: CreateDatasetOptions = {}): Promise<DatasetInfo> {
  checkSubvolumePath(name);
  if (opts.volumeSize !== undefined && (!Number.isSafeInteger(opts.volumeSize) || opts.volumeSize <= 0)) {
    throw new BtrfsError('refused', `The volume size ${opts.volumeSize} is not a positive number of bytes.`);
  }
  if (opts.parents) await mkdir(path.dirname(name), { recursive: true }).catch(() => undefined);
  if (await getDataset(cli, name)) throw new BtrfsError('exists', `The subvolume '${name}' already exists.`);
  await cli.btrfs(['subvolume', 'create', name]);
  if (opts.volumeSize !== undefined) {
    // a sparse image file: space is taken as the volume is written
    await writeFile(volumeFile(name), '');
    await truncate(volumeFile(name), opts.volumeSize);
  }
  return requireDataset(cli, name);
}

export async function destroyDataset(cli: BtrfsCli, name: string, opts: { recursive?: boolean } = {}): Promise<void> {
  await requireDataset(cli, name);
  const snapshots = snapshotDir(name);
  const snapshotNames = (await readdir(snapshots).catch(() => [] as string[])).filter((entry) => !entry.startsWith('.'));
  const nested = (await subvolumesUnder(cli, name)).filter((found) => found !== name);
  if (!opts.recursive && (snapshotNames.length > 0 || nested.length > 0)) {
    throw new BtrfsError('has-snapshots', `The subvolume '${name}' has snapshots or nested subvolumes; destroy it recursively to remove them too.`);
  }
  const held = (await readdir(path.join(snapshots, HOLDS_DIR)).catch(() => [] as string[]))[0];
  if (held) throw new BtrfsError('held', `The snapshot '${held}' of '${name}' is held, so '${name}' cannot be destroyed; release it first.`);
  // deepest first: a subvolume holding another cannot be deleted
  for (const subvolume of nested.sort((a, b) => b.length - a.length)) await cli.deleteSubvolume(subvolume);
  await cli.deleteSubvolume(name);
  for (const entry of await readdir(snapshots).catch(() => [] as string[])) {
    const full = path.join(snapshots, entry);
    if (await isSubvolume(full)) await cli.deleteSubvolume(full);
  }
  await rm(snapshots, { recursive: true, force: true });
}

export async function mount(cli: BtrfsCli, name: string): Promise<void> {
  const info = await requireDataset(cli, name);
  if (info.readonly) await cli.setReadonly(name, false);
}

export async function unmount(cli: BtrfsCli, name: string): Promise<void> {
  const info = await requireDataset(cli, name);
  if (!info.readonly) await cli.setReadonly(name, true);
}
