/**
 * `zfs` / `zpool` stderr turned into sentences an operator can act on. The
 * matching is on the stable parts of the messages, which have not changed
 * from pool v23 (zfs-fuse) to OpenZFS 2.x.
 */
import { CommandError } from '../exec.js';

export type ZfsErrorCode =
  | 'no-space'
  | 'modified'
  | 'missing'
  | 'no-pool'
  | 'busy'
  | 'held'
  | 'exists'
  | 'has-snapshots'
  | 'has-children'
  | 'later-snapshots'
  | 'bad-stream'
  | 'not-base'
  | 'unsupported'
  | 'daemon'
  | 'not-found'
  | 'refused'
  | 'aborted'
  | 'other';

export class ZfsError extends Error {
  constructor(
    readonly code: ZfsErrorCode,
    message: string,
    readonly stderr = '',
  ) {
    super(message);
    this.name = 'ZfsError';
  }
}

const RULES: Array<[RegExp, (m: RegExpMatchArray) => ZfsError]> = [
  [/out of space|no space left/i, () => new ZfsError('no-space', 'The pool ran out of space.')],
  [/destination (\S+) has been modified/i, (m) => new ZfsError('modified', `The destination '${m[1]}' has been changed since its newest snapshot; receiving would discard those changes.`)],
  [/cannot open '([^'@]+)': no such pool/i, (m) => new ZfsError('no-pool', `The pool '${m[1]}' does not exist.`)],
  [/could not send (\S+): does not exist/i, (m) => new ZfsError('missing', `The snapshot '${m[1]}' does not exist.`)],
  [/cannot open '([^']+)': dataset does not exist/i, (m) => new ZfsError('missing', `The dataset '${m[1]}' does not exist.`)],
  [/destination '([^']+)' exists/i, (m) => new ZfsError('exists', `The destination '${m[1]}' already exists.`)],
  [/destination has snapshots \(eg\. ([^)]+)\)/i, (m) => new ZfsError('has-snapshots', `The destination already has snapshots (for example '${m[1]}'), so a full stream cannot replace it.`)],
  [/most recent snapshot of (\S+) does not\s+match incremental source/i, (m) => new ZfsError('not-base', `The newest snapshot of '${m[1]}' is not the base this incremental stream was made from.`)],
  [/destination (\S+) does not exist/i, (m) => new ZfsError('missing', `The destination '${m[1]}' does not exist.`)],
  [/invalid backup stream|checksum mismatch|bad magic number|stream.*(truncated|corrupt)/i, () => new ZfsError('bad-stream', 'The stream was cut short or is corrupt.')],
  [/more recent snapshots exist/i, () => new ZfsError('later-snapshots', 'More recent snapshots exist.')],
  [/filesystem has children|has dependent clones/i, () => new ZfsError('has-children', 'It has child datasets or snapshots.')],
  [/dataset is busy|pool or dataset is busy/i, () => new ZfsError('busy', 'The dataset or snapshot is busy (held, mounted in use, or being received).')],
  [/dataset already exists/i, () => new ZfsError('exists', 'It already exists.')],
  [/function not implemented|operation not supported|not supported/i, () => new ZfsError('unsupported', 'This ZFS does not support the operation.')],
  [/zfs-fuse daemon is running|failed to initialize ZFS library|\/dev\/zfs/i, () => new ZfsError('daemon', 'ZFS is not running on this appliance (the zfs-fuse daemon or the zfs kernel module is missing).')],
];

/** the clearest ZfsError for a failed zfs/zpool command */
export function explainZfs(error: unknown): Error {
  if (error instanceof ZfsError || !(error instanceof CommandError)) return error as Error;
  if (error.missing) return new ZfsError('not-found', `The command '${error.file}' was not found; ZFS is not installed.`);
  for (const [pattern, make] of RULES) {
    const match = error.stderr.match(pattern);
    if (match) {
      const made = make(match);
      return new ZfsError(made.code, made.message, error.stderr);
    }
  }
  return new ZfsError('other', error.message, error.stderr);
}

export const isZfsError = (error: unknown, code: ZfsErrorCode): error is ZfsError => error instanceof ZfsError && error.code === code;
