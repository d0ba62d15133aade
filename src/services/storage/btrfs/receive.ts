/**
 * `btrfs receive` into the dataset's snapshot directory, then the live
 * subvolume becomes a writable snapshot of what arrived (swap.ts); the
 * received read-only snapshot stays as the marker the next incremental
 * starts from. The stream's first command tells, before anything runs, the
 * snapshot's name and, for an incremental, which base it needs.
 *
 * A cut, corrupt or refused stream leaves a partial subvolume (writable, no
 * received uuid): it is deleted and the live subvolume was never touched.
 * A receive that returns has its transaction committed (`btrfs filesystem
 * sync`): it survives a power cut (test/services/storage/btrfs-power-cut.test.ts).
 */
import { mkdir } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { ReceiveOptions, ReceiveResult } from '../driver.js';
import { feed } from '../exec.js';
import { isSubvolume, type BtrfsCli } from './cli.js';
import { BtrfsError, explainBtrfs } from './errors.js';
import { checkSubvolumePath, snapshotDir, snapshotPath } from './layout.js';
import { changedSince, getSnapshot, listSnapshots, NO_RECURSION, publicInfo, type BtrfsSnapshot } from './snapshots.js';
import { describeBtrfsStream, type BtrfsStreamDescription } from './stream-header.js';
import { getDataset } from './subvolumes.js';
import { replaceLive } from './swap.js';

export async function receive(cli: BtrfsCli, dataset: string, stream: Readable, opts: ReceiveOptions): Promise<ReceiveResult> {
  try {
    checkSubvolumePath(dataset);
    if (opts.recursive) throw new BtrfsError('unsupported', NO_RECURSION);
  } catch (error) {
    stream.destroy();
    throw error;
  }
  const { description, rest } = await describeBtrfsStream(stream);
  let fed = false;
  try {
    const previous = await checkDestination(cli, dataset, description, opts);
    await mkdir(snapshotDir(dataset), { recursive: true });
    let bytes: number;
    try {
      fed = true;
      ({ bytes } = await feed(cli.bin, ['receive', '-e', snapshotDir(dataset)], rest, opts.signal ? { signal: opts.signal } : {}));
    } catch (error) {
      throw await failed(cli, dataset, description, previous, error);
    }
    const received = await getSnapshot(cli, dataset, description.name);
    if (received.id !== description.uuid) {
      throw new BtrfsError('other', `The received snapshot '${received.path}' has id ${received.id}, not the stream's ${description.uuid}.`);
    }
    try {
      await replaceLive(cli, dataset, received.path);
    } catch (error) {
      throw new BtrfsError('other', `'${description.name}' was received, but making it the live '${dataset}' failed (${(error as Error).message}); run recover on '${dataset}'.`);
    }
    // btrfs receive leaves the received snapshot (its received uuid, read-only flag) and the swap in the running
    // transaction: a power cut before its commit took them, after this receive had said it was done.
    await cli.btrfs(['filesystem', 'sync', dataset]);
    return { snapshot: publicInfo(received), bytes };
  } finally {
    if (!fed) rest.destroy();
  }
}

interface Previous {
  live: boolean;
  newest: BtrfsSnapshot | undefined;
}

/** refuse, before anything runs, what would fail or lose data; says where the destination stood */
async function checkDestination(cli: BtrfsCli, dataset: string, stream: BtrfsStreamDescription, opts: ReceiveOptions): Promise<Previous> {
  const live = (await getDataset(cli, dataset)) !== null;
  const snapshots = await listSnapshots(cli, dataset);
  const newest = snapshots.at(-1);
  if (await isSubvolume(snapshotPath(dataset, stream.name))) {
    throw new BtrfsError('exists', `The destination '${dataset}' already has a snapshot named '${stream.name}'.`);
  }
  if (stream.baseUuid) {
    if (!snapshots.some((s) => s.id === stream.baseUuid || s.show.uuid === stream.baseUuid)) {
      throw new BtrfsError('not-base', `The destination '${dataset}' does not hold the base snapshot of this incremental stream (id ${stream.baseUuid}).`);
    }
  } else if (live && !opts.force) {
    throw new BtrfsError('exists', `The destination '${dataset}' already exists; receiving a full stream would replace it, which needs force.`);
  }
  if (live && newest && !opts.force && (await changedSince(cli, dataset, newest.name))) {
    throw new BtrfsError('modified', `The destination '${dataset}' has been changed since its newest snapshot '${newest.name}'; receiving would discard those changes, so it is refused without force.`);
  }
  return { live, newest };
}

async function failed(cli: BtrfsCli, dataset: string, stream: BtrfsStreamDescription, previous: Previous, error: unknown): Promise<Error> {
  const cause = explainBtrfs(error);
  const code = cause instanceof BtrfsError ? cause.code : cause.name === 'AbortError' ? 'aborted' : 'bad-stream';
  const reason = code === 'no-space' ? `The filesystem holding '${dataset}' ran out of space.` : cause.message;
  let outcome = previous.newest ? `'${dataset}' was left at its previous snapshot '${previous.newest.name}'.` : previous.live ? `'${dataset}' was left as it was.` : 'Nothing was left behind.';
  const partial = snapshotPath(dataset, stream.name);
  if (await isSubvolume(partial)) {
    await cli.deleteSubvolume(partial).catch((undoError: Error) => {
      outcome = `Deleting the partial '${partial}' also failed (${undoError.message}); run recover on '${dataset}'.`;
    });
  }
  const wrapped = new BtrfsError(code, `Receiving into '${dataset}' failed: ${reason} ${outcome}`, cause instanceof BtrfsError ? cause.stderr : '');
  wrapped.cause = error;
  return wrapped;
}
