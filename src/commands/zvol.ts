/** zvols: block volumes served over NBD (`create/show/setup/destroy zvol`). */
import type { CommandFamily, CommandSpec } from './grammar/types.js';
import { bytes, formatBytes, formatTime, text } from './values.js';
import { confirmed, NOTHING_CHANGED } from './ask.js';
import { ZVOL_PROPERTIES, type ZvolView } from '../services/zvols.js';

const words = {
  zvol: 'block volumes (zvols), served over NBD by the daemon',
  size: "a zvol's size (it can only grow)",
  property: 'a property of a zvol (readonly, description)',
  'export-image': "write a zvol's new snapshot as a raw image with its sha256 (a seed for another appliance)",
};

const dataset = (help: string) => ({ ...text('DATASET'), help });

function fields(z: ZvolView): [string, string][] {
  return [
    ['name', z.name],
    ['size', formatBytes(z.size)],
    ['block_size', formatBytes(z.blockSize)],
    ['used', formatBytes(z.used)],
    ['written', formatBytes(z.written)],
    ['dedup_ratio', `${z.dedupRatio.toFixed(2)}x`],
    ['readonly', z.properties.readonly ? 'yes' : 'no'],
    ['description', z.properties.description || '-'],
    ['clients', z.clients.length ? z.clients.map((c) => `${c.client} (since ${formatTime(c.since)})`).join(', ') : '-'],
    ['nbd', z.nbd],
  ];
}

const createZvol: CommandSpec = {
  path: 'create zvol <DATASET>',
  help: 'create a zvol of --size bytes (fs:tank/vm1; zfs where the installed ZFS has zvols)',
  details: 'The size is a multiple of the block size (default 64K, a power of two from 512 to 64K). The daemon exports the zvol over NBD at once, under its name.',
  args: { DATASET: dataset('the zvol to create') },
  options: [
    { name: '--size', help: 'its size, e.g. 10G', value: bytes },
    { name: '--block-size', help: 'its block size: 512 to 64K, a power of two (default 64K)', value: bytes },
    { name: '--from-image', help: "seed it from a raw image (gzip or not) in $SYNCSH_HOME/images; its size is the image's", value: text('FILE') },
    { name: '--sha256', help: "with --from-image: the image's sha256, checked before anything is created", value: text('HEX') },
  ],
  async run(ctx, input) {
    const size = input.options.size as number | undefined;
    const image = input.options['from-image'] as string | undefined;
    const sha256 = input.options.sha256 as string | undefined;
    if (image !== undefined) {
      if (size !== undefined) throw new Error('create zvol --from-image takes its size from the image: leave out --size.');
      if (sha256 === undefined) throw new Error(`create zvol --from-image needs the image's checksum: add --sha256 HEX (printed by setup zvol … export-image, or sha256sum of a raw image).`);
      ctx.progress(`Checking the sha256 of ${image} …`);
      const r = await ctx.services.zvolImages.createFromImage(input.args.DATASET as string, image, sha256, { blockSize: input.options['block-size'] as number | undefined });
      const z = await ctx.services.zvols.one(r.zvol);
      return {
        kind: 'message',
        text: `Created zvol ${z.name} (${formatBytes(z.size)}) from ${image} (sha256 verified; ${r.stored} of ${r.chunks} chunks hold data${r.seed ? `; it is the snapshot @${r.seed} of the exported zvol, so the first auto-sync from that zvol sends only what changed since` : ''}); attach it at ${z.nbd}`,
        data: { ...z, image: r },
      };
    }
    if (sha256 !== undefined) throw new Error('--sha256 goes with --from-image.');
    if (size === undefined) throw new Error('create zvol needs its size: add --size, e.g. --size 10G.');
    const z = await ctx.services.zvols.create(input.args.DATASET as string, { size, blockSize: input.options['block-size'] as number | undefined });
    return { kind: 'message', text: `Created zvol ${z.name} (${formatBytes(z.size)}); attach it at ${z.nbd}`, data: z };
  },
};

const showZvol: CommandSpec = {
  path: 'show zvol [<DATASET>]',
  help: 'zvols: size, used, written since the last snapshot, dedupe ratio, NBD clients and URI',
  args: { DATASET: dataset('show this zvol only') },
  async run(ctx, input) {
    const name = input.args.DATASET as string | undefined;
    if (name) {
      const z = await ctx.services.zvols.one(name);
      return { kind: 'record', fields: fields(z), data: z };
    }
    const all = await ctx.services.zvols.list();
    return {
      kind: 'table',
      columns: [
        { key: 'name', header: 'NAME' },
        { key: 'size', header: 'SIZE', align: 'right' },
        { key: 'used', header: 'USED', align: 'right' },
        { key: 'written', header: 'WRITTEN', align: 'right' },
        { key: 'dedup', header: 'DEDUP', align: 'right' },
        { key: 'clients', header: 'CLIENTS', align: 'right' },
        { key: 'nbd', header: 'NBD', flexible: true },
      ],
      rows: all.map((z) => ({
        name: z.name,
        size: formatBytes(z.size),
        used: formatBytes(z.used),
        written: formatBytes(z.written),
        dedup: `${z.dedupRatio.toFixed(2)}x`,
        clients: String(z.clients.length),
        nbd: z.nbd,
      })),
      data: all,
      empty: "No zvols. Create one with 'create zvol fs:tank/vm1 --size 10G'.",
    };
  },
};

const setupSize: CommandSpec = {
  path: 'setup zvol <DATASET> size <SIZE>',
  help: 'grow a zvol (never shrink); not while NBD clients are attached',
  args: { DATASET: dataset('the zvol'), SIZE: { ...bytes, help: 'the new size, larger than now, e.g. 20G' } },
  async run(ctx, input) {
    const z = await ctx.services.zvols.resize(input.args.DATASET as string, input.args.SIZE as number);
    return { kind: 'message', text: `The zvol ${z.name} is now ${formatBytes(z.size)}.`, data: z };
  },
};

const setupProperty: CommandSpec = {
  path: 'setup zvol <DATASET> property <KEY> <VALUE>',
  help: `set a property of a zvol (${ZVOL_PROPERTIES.join(', ')})`,
  args: {
    DATASET: dataset('the zvol'),
    KEY: { ...text('KEY', () => ZVOL_PROPERTIES), help: 'the property' },
    VALUE: { ...text('VALUE'), help: 'its value (readonly: yes or no)', rest: true },
  },
  async run(ctx, input) {
    const key = input.args.KEY as string;
    const z = await ctx.services.zvols.setProperty(input.args.DATASET as string, key, (input.args.VALUE as string[]).join(' '));
    return { kind: 'message', text: `Set ${key} of zvol ${z.name}.`, data: z };
  },
};

const exportImage: CommandSpec = {
  path: 'setup zvol <DATASET> export-image <FILE>',
  help: 'snapshot a zvol and write that snapshot as a raw image into $SYNCSH_HOME/images, with its sha256',
  details: 'The snapshot is held, so it stays as the base of the seed. Give the printed sha256 to create zvol --from-image on the other appliance.',
  args: { DATASET: dataset('the zvol'), FILE: { ...text('FILE'), help: 'the image name in $SYNCSH_HOME/images, e.g. vm1.img or vm1.img.gz' } },
  options: [
    {
      name: '--compress',
      help: 'gzip the image',
      value: {
        name: 'gzip',
        values: () => ['gzip'],
        parse: (raw, label) => {
          if (raw !== 'gzip') throw new Error(`The value of ${label} is gzip (the only compression), not "${raw}".`);
          return raw;
        },
      },
    },
  ],
  async run(ctx, input) {
    ctx.progress('Writing the image …');
    const r = await ctx.services.zvolImages.exportImage(input.args.DATASET as string, input.args.FILE as string, { compress: input.options.compress as 'gzip' | undefined });
    return { kind: 'message', text: `Wrote ${r.file} from ${r.zvol}@${r.snapshot} (held); sha256 ${r.sha256}`, data: r };
  },
};

const destroyZvol: CommandSpec = {
  path: 'destroy zvol <DATASET>',
  help: 'destroy a zvol and its snapshots (asks first); refused while clients are attached or a service uses it',
  args: { DATASET: dataset('the zvol to destroy') },
  async run(ctx, input) {
    const name = input.args.DATASET as string;
    const busy = await ctx.services.zvols.busyReason(name); // also: exists and is a zvol, before asking
    if (busy) throw new Error(busy);
    if (!(await confirmed(ctx, `Destroy zvol '${name}' with all its data and snapshots?`, 'This cannot be undone.'))) return NOTHING_CHANGED;
    await ctx.services.zvols.destroy(name);
    return { kind: 'message', text: `Destroyed zvol ${name}.` };
  },
};

export const zvolFamily: CommandFamily = { words, commands: [createZvol, showZvol, setupSize, setupProperty, exportImage, destroyZvol] };
