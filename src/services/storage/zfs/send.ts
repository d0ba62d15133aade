/**
 * `zfs send` as a Readable. Incrementals use `-I` so the snapshots between
 * the base and the target travel too and the chain stays identical on both
 * sides; `-R` carries children and their properties, `-p` carries the
 * properties of a single dataset where this zfs has it.
 */
import { PassThrough, type Readable } from 'node:stream';
import type { SendOptions } from '../driver.js';
import { streamFrom } from '../exec.js';
import type { ZfsCli } from './cli.js';
import { explainZfs } from './errors.js';
import { checkDatasetName, checkSnapshotName, snapshotPath } from './names.js';

export function sendArgs(dataset: string, snapshot: string, opts: SendOptions, withProperties: boolean): string[] {
  return [
    'send',
    ...(opts.recursive ? ['-R'] : withProperties ? ['-p'] : []),
    ...(opts.from ? ['-I', snapshotPath(dataset, opts.from)] : []),
    snapshotPath(dataset, snapshot),
  ];
}

/** names are checked before anything runs (a bad one throws here, synchronously) */
export function send(cli: ZfsCli, dataset: string, snapshot: string, opts: SendOptions): Readable {
  checkDatasetName(dataset);
  checkSnapshotName(snapshot);
  if (opts.from !== undefined) checkSnapshotName(opts.from);
  // feature detection is async but the stream must be returned now: start it once known
  const out = new PassThrough();
  void cli.features().then(
    (features) => {
      if (out.destroyed) return;
      const zfs = streamFrom(cli.zfsBin, sendArgs(dataset, snapshot, opts, features.sendProperties), {
        ...(opts.signal ? { signal: opts.signal } : {}),
        explain: (error) => {
          const explained = explainZfs(error);
          explained.message = `Sending '${snapshotPath(dataset, snapshot)}' failed: ${explained.message}`;
          return explained;
        },
      });
      zfs.on('error', (error) => out.destroy(error));
      out.on('close', () => zfs.destroy());
      zfs.pipe(out);
    },
    (error: Error) => out.destroy(error),
  );
  return out;
}
