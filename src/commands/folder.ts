/** Folders (datasets) and their snapshots. */
import type { CommandFamily, CommandSpec } from './grammar/types.js';
import { formatBytes, formatTime, size, text } from './values.js';
import { confirmed, NOTHING_CHANGED } from './ask.js';

const words = {
  folder: 'datasets: folders (fs, zfs or btrfs) and volumes',
  snapshot: 'snapshots of datasets, including the markers of auto-sync services',
};

const dataset = (help: string) => ({ ...text('DATASET'), help });

const createFolder: CommandSpec = {
  path: 'create folder <DATASET>',
  help: 'create a dataset (fs:tank/data, zfs:pool/fs, btrfs:/mnt/pool/subvol)',
  args: { DATASET: dataset('the dataset to create') },
  options: [{ name: '--volume-size', help: 'make a volume (zvol or image) of this size instead of a folder', value: size }],
  async run(ctx, input) {
    ctx.access.dataset(input.args.DATASET as string);
    const f = await ctx.services.folders.create(input.args.DATASET as string, { volumeSize: input.options['volume-size'] as number | undefined });
    return { kind: 'message', text: `Created ${f.kind === 'volume' ? 'volume' : 'folder'} ${f.qualified}${f.mountpoint ? ` at ${f.mountpoint}` : ''}.`, data: f };
  },
};

const showFolders: CommandSpec = {
  path: 'show folder [<DATASET>]',
  help: 'list datasets with the directory where their files live',
  args: { DATASET: dataset('show this dataset and its children') },
  async run(ctx, input) {
    const folders = await ctx.services.folders.list(input.args.DATASET as string | undefined);
    return {
      kind: 'table',
      columns: [
        { key: 'name', header: 'NAME' },
        { key: 'kind', header: 'TYPE' },
        { key: 'mountpoint', header: 'MOUNTPOINT', flexible: true },
        { key: 'mounted', header: 'MOUNTED' },
        { key: 'used', header: 'USED', align: 'right' },
      ],
      rows: folders.map((f) => ({
        name: f.qualified,
        kind: f.kind,
        mountpoint: f.mountpoint ?? '-',
        mounted: f.mounted ? 'yes' : 'no',
        used: f.used === undefined ? '-' : formatBytes(f.used),
      })),
      data: folders,
      empty: "No folders. Create one with 'create folder fs:tank/data'.",
    };
  },
};

const destroyFolder: CommandSpec = {
  path: 'destroy folder <DATASET>',
  help: 'destroy a dataset, its children and snapshots (asks first)',
  args: { DATASET: dataset('the dataset to destroy') },
  async run(ctx, input) {
    const name = input.args.DATASET as string;
    ctx.access.dataset(name);
    await ctx.services.folders.list(name); // exists, or a clear error before asking
    if (!(await confirmed(ctx, `Destroy folder '${name}' with all its files, children and snapshots?`, 'This cannot be undone.'))) return NOTHING_CHANGED;
    await ctx.services.folders.destroy(name);
    return { kind: 'message', text: `Destroyed folder ${name}.` };
  },
};

const showSnapshots: CommandSpec = {
  path: 'show snapshot [<DATASET>]',
  help: 'list snapshots (of one dataset and its children, or all)',
  args: { DATASET: dataset('the dataset whose snapshots to list') },
  async run(ctx, input) {
    const snaps = await ctx.services.folders.snapshots(input.args.DATASET as string | undefined);
    return {
      kind: 'table',
      columns: [
        { key: 'name', header: 'NAME', flexible: true },
        { key: 'created', header: 'CREATED' },
        { key: 'size', header: 'SIZE', align: 'right' },
        { key: 'service', header: 'SERVICE' },
        { key: 'held', header: 'PROTECTED' },
      ],
      rows: snaps.map((s) => ({
        name: s.qualified,
        created: formatTime(s.createdAt.toISOString()),
        size: s.size === undefined ? '-' : formatBytes(s.size),
        service: s.service ? `auto-sync:${s.service}` : s.foreign ? `foreign (${s.foreign}: no such service here)` : '-',
        held: s.held ? 'yes' : 'no',
      })),
      data: snaps,
      empty: 'No snapshots.',
    };
  },
};

const destroySnapshot: CommandSpec = {
  path: 'destroy snapshot <SNAPSHOT>',
  help: "destroy a snapshot (asks first); a service's last common snapshot only with --force",
  args: { SNAPSHOT: { ...text('DATASET@NAME'), help: 'the snapshot, e.g. fs:tank/data@before-upgrade' } },
  options: [{ name: '--force', help: "also a service's last common snapshot (the next run then needs a full resync)" }],
  async run(ctx, input) {
    const name = input.args.SNAPSHOT as string;
    const force = Boolean(input.options.force);
    ctx.access.dataset(name);
    const snap = await ctx.services.folders.findSnapshot(name, force);
    if (!(await confirmed(ctx, `Destroy snapshot '${snap.qualified}'?`, 'This cannot be undone.'))) return NOTHING_CHANGED;
    await ctx.services.folders.destroySnapshot(name, force);
    return { kind: 'message', text: `Destroyed snapshot ${snap.qualified}.` };
  },
};

export const folderFamily: CommandFamily = { words, commands: [createFolder, showFolders, destroyFolder, showSnapshots, destroySnapshot] };
