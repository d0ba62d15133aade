/**
 * `zfs receive` into a named destination, never with `-d`/`-e`: receiving
 * into the full name maps the sent dataset onto it and its children below it
 * (`tank/src/a` -> `backup/dst/a`), for full and incremental, plain and `-R`
 * streams alike. `-F` only with `force`.
 *
 * ZFS makes one dataset's receive atomic (a cut stream leaves it at its
 * previous snapshot), but not a `-R` package: children received before the
 * cut stay. So a failed receive is undone here: datasets it created are
 * destroyed and datasets it advanced are rolled back to the snapshot they
 * had before. What `-F` itself destroyed (snapshots or children that the
 * source no longer has) cannot come back; that is what force means.
 */
import type { Readable } from 'node:stream';
import type { ReceiveOptions, ReceiveResult, SnapshotInfo } from '../driver.js';
import { feed } from '../exec.js';
import type { ZfsCli } from './cli.js';
import { destroyTree } from './datasets.js';
import { mountable, mountAgain, refreshMounts } from './mounts.js';
import { explainZfs, isZfsError, ZfsError } from './errors.js';
import { checkDatasetName, parentOf, poolOf, snapshotPath, splitSnapshotPath } from './names.js';
import { changedSince, getSnapshot, listSnapshots } from './snapshots.js';
import { describeStream, type StreamDescription } from './stream-header.js';

/** dataset -> its newest snapshot before the receive (null: it had none) */
type Before = Map<string, string | null>;

export async function receive(cli: ZfsCli, dataset: string, stream: Readable, opts: ReceiveOptions): Promise<ReceiveResult> {
  try {
    checkDatasetName(dataset);
    await cli.requirePool(dataset);
  } catch (error) {
    stream.destroy();
    throw error;
  }
  const { description, rest } = await describeStream(stream);
  let fed = false;
  try {
    const existed = await checkDestination(cli, dataset, description, opts);
    const before = existed ? await newestSnapshots(cli, dataset) : null;
    const mountedBefore = existed ? (await mountable(cli, dataset)).mounted : [];
    const resumable = (await cli.features()).resumable && !opts.recursive && !description.compound;
    const args = receiveArgs(dataset, opts.force, resumable);
    let bytes: number;
    try {
      fed = true;
      ({ bytes } = await feed(cli.zfsBin, args, rest, opts.signal ? { signal: opts.signal } : {}));
    } catch (error) {
      // Kept as it is: the next run finishes it from the token instead of sending it all again.
      if (resumable && (await resumeToken(cli, dataset).catch(() => null))) {
        throw new ZfsError('aborted', `Receiving into '${dataset}' was cut: ${explainZfs(error).message} The part received is kept (receive_resume_token); the next run resumes from it.`);
      }
      const newest = before?.get(dataset);
      if (!opts.force && newest && isZfsError(explainZfs(error), 'modified')) {
        await failed(cli, dataset, before, mountedBefore, error); // nothing was received: this only remounts what was mounted
        throw refusedAsChanged(dataset, newest);
      }
      throw await failed(cli, dataset, before, mountedBefore, error);
    }
    await refreshMounts(cli, dataset);
    // zfs receive unmounts and remounts the destination itself, and zfs-fuse can fail that under
    // load: what was mounted before is mounted again, and what the stream created is mounted
    const { all } = await mountable(cli, dataset);
    await mountAgain(
      cli,
      all.filter((name) => mountedBefore.includes(name) || !before?.has(name)),
    ).catch(() => undefined);
    return { snapshot: await receivedSnapshot(cli, dataset, description), bytes };
  } finally {
    if (!fed) rest.destroy();
  }
}

/** `-s` keeps a cut receive resumable where this zfs has it (not for `-R` packages, which `send -t` cannot resume) */
export function receiveArgs(dataset: string, force: boolean, resumable: boolean): string[] {
  return ['receive', ...(resumable ? ['-s'] : []), ...(force ? ['-F'] : []), dataset];
}

/** the token a cut `receive -s` left on `dataset`, or null */
export async function resumeToken(cli: ZfsCli, dataset: string): Promise<string | null> {
  if (!(await cli.features()).resumable || !(await cli.exists(dataset))) return null;
  const token = (await cli.getProps([dataset], ['receive_resume_token'])).get(dataset)?.receive_resume_token;
  return token && token !== '-' ? token : null;
}

/**
 * The snapshot the stream brought. A compound header names the last one; a
 * plain `-I` stream is several streams in a row and its first header names
 * only the first, so then it is the destination's newest snapshot.
 */
async function receivedSnapshot(cli: ZfsCli, dataset: string, stream: StreamDescription): Promise<SnapshotInfo> {
  const first = splitSnapshotPath(stream.toName).snapshot;
  if (stream.compound) return getSnapshot(cli, dataset, first);
  const newest = (await listSnapshots(cli, dataset)).at(-1);
  if (!newest) throw new ZfsError('other', `After the receive, '${dataset}' has no snapshot.`);
  if (newest.name === first && stream.toGuid !== null && newest.id !== stream.toGuid) {
    throw new ZfsError('other', `After the receive, '${snapshotPath(dataset, first)}' has guid ${newest.id}, not the stream's ${stream.toGuid}.`);
  }
  return newest;
}

/** refuse, before touching anything, what zfs would refuse less clearly (or what would lose data); returns whether it exists */
async function checkDestination(cli: ZfsCli, dataset: string, stream: StreamDescription, opts: ReceiveOptions): Promise<boolean> {
  const { incremental } = stream;
  const exists = await cli.exists(dataset);
  if (!exists) {
    if (incremental) {
      throw new ZfsError('missing', `The destination '${dataset}' does not exist; an incremental stream needs its base snapshot there.`);
    }
    const parent = parentOf(dataset);
    if (parent && !(await cli.exists(parent))) {
      throw new ZfsError('missing', `The parent dataset '${parent}' of the destination '${dataset}' does not exist.`);
    }
    return false;
  }
  if (!incremental && !opts.force) {
    throw new ZfsError('exists', `The destination '${dataset}' already exists; receiving a full stream would replace it, which needs force.`);
  }
  // one dataset: `zfs receive` without -F refuses a destination changed since its newest snapshot itself
  // (receive() words that refusal as refusedAsChanged does); a tree is checked here, child by child
  if (!opts.force && (opts.recursive || stream.compound)) await refuseIfChanged(cli, dataset, true);
  return true;
}

async function refuseIfChanged(cli: ZfsCli, dataset: string, withChildren: boolean): Promise<void> {
  const datasets = withChildren ? await cli.listNames(dataset, 'filesystem,volume') : [dataset];
  for (const name of datasets) {
    const newest = (await listSnapshots(cli, name)).at(-1);
    if (newest && (await changedSince(cli, name, newest.name))) throw refusedAsChanged(name, newest.name);
  }
}

function refusedAsChanged(dataset: string, newest: string): ZfsError {
  return new ZfsError('modified', `The destination '${dataset}' has been changed since its newest snapshot '${newest}'; receiving would discard those changes, so it is refused without force.`);
}

async function newestSnapshots(cli: ZfsCli, dataset: string): Promise<Before> {
  const before: Before = new Map();
  for (const name of await cli.listNames(dataset, 'filesystem,volume')) {
    before.set(name, (await listSnapshots(cli, name)).at(-1)?.name ?? null);
  }
  return before;
}

/** undo what a failed receive left, and say so in the error */
async function failed(cli: ZfsCli, dataset: string, before: Before | null, mountedBefore: string[], error: unknown): Promise<Error> {
  const cause = explainZfs(error);
  const code = cause instanceof ZfsError ? cause.code : cause.name === 'AbortError' ? 'aborted' : 'bad-stream';
  const reason = code === 'no-space' ? `The pool '${poolOf(dataset)}' ran out of space.` : cause.message;
  let outcome: string;
  try {
    // Remounted only when something was undone (a rollback leaves zfs-fuse's cached lookups stale). A
    // receive that failed with nothing to undo (the common case of a full pool) changed no file, and an
    // unmount there only risks the remount: in a full pool under load zfs-fuse answered it "busy"
    // past the 30 s retry, and the destination stayed unmounted (fault campaign, full-disk/zfs/local).
    if ((await undoPartialReceive(cli, dataset, before)).length > 0) await refreshMounts(cli, dataset);
    await mountAgain(cli, mountedBefore);
    const previous = before?.get(dataset);
    outcome = before === null ? 'Nothing was left behind.' : previous ? `'${dataset}' was left at its previous snapshot '${previous}'.` : `'${dataset}' was left as it was.`;
  } catch (undoError) {
    outcome = `Undoing the partial receive also failed (${(undoError as Error).message}); run recover on '${dataset}'.`;
  }
  const wrapped = new ZfsError(code, `Receiving into '${dataset}' failed: ${reason} ${outcome}`, cause instanceof ZfsError ? cause.stderr : '');
  wrapped.cause = error;
  return wrapped;
}

export async function undoPartialReceive(cli: ZfsCli, dataset: string, before: Before | null): Promise<string[]> {
  const done: string[] = [];
  if (!(await cli.exists(dataset))) return done;
  if (before === null) {
    await destroyTree(cli, dataset, true);
    return [`destroyed the partially received '${dataset}'`];
  }
  const now = await cli.listNames(dataset, 'filesystem,volume');
  const created = now.filter((name) => !before.has(name));
  // the topmost new dataset's `destroy -r` takes its new children with it
  for (const name of created.filter((n) => !created.some((other) => n.startsWith(`${other}/`)))) {
    await destroyTree(cli, name, true);
    done.push(`destroyed the partially received '${name}'`);
  }
  for (const name of now.filter((n) => before.has(n))) {
    const previous = before.get(name) ?? null;
    const snapshots = await listSnapshots(cli, name);
    const at = previous === null ? -1 : snapshots.findIndex((s) => s.name === previous);
    const added = snapshots.slice(at + 1);
    if (added.length === 0) continue;
    if (previous === null) {
      for (const s of added) await cli.zfs(['destroy', snapshotPath(name, s.name)]);
    } else {
      await cli.zfs(['rollback', '-r', snapshotPath(name, previous)]);
    }
    done.push(`returned '${name}' to ${previous ? `'${previous}'` : 'no snapshot'}, dropping ${added.map((s) => `'${s.name}'`).join(', ')}`);
  }
  return done;
}
