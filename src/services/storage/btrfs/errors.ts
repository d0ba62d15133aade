/** `btrfs` stderr turned into sentences an operator can act on. */
import { CommandError } from '../exec.js';

export type BtrfsErrorCode = 'no-space' | 'bad-stream' | 'missing' | 'not-subvolume' | 'not-btrfs' | 'exists' | 'not-base' | 'held' | 'modified' | 'has-snapshots' | 'unsupported' | 'aborted' | 'not-found' | 'refused' | 'other';

export class BtrfsError extends Error {
  constructor(
    readonly code: BtrfsErrorCode,
    message: string,
    readonly stderr = '',
  ) {
    super(message);
    this.name = 'BtrfsError';
  }
}

const RULES: Array<[RegExp, (m: RegExpMatchArray) => BtrfsError]> = [
  [/No space left on device/i, () => new BtrfsError('no-space', 'The filesystem ran out of space.')],
  [/unexpected EOF in stream|short read from stream|crc32 mismatch|invalid (send )?stream|bad magic|unsupported stream version|stream.*(truncated|corrupt)/i, () => new BtrfsError('bad-stream', 'The stream was cut short or is corrupt.')],
  [/cannot find parent subvolume|could not find parent subvolume|parent subvol.*not found/i, () => new BtrfsError('not-base', 'The base snapshot of this incremental stream is not on the destination.')],
  [/not a btrfs (filesystem|subvolume)|not a subvolume/i, () => new BtrfsError('not-subvolume', 'It is not a btrfs subvolume.')],
  [/File exists/i, () => new BtrfsError('exists', 'It already exists.')],
  [/No such file or directory/i, () => new BtrfsError('missing', 'It does not exist.')],
];

export function explainBtrfs(error: unknown): Error {
  if (error instanceof BtrfsError || !(error instanceof CommandError)) return error as Error;
  if (error.missing) return new BtrfsError('not-found', `The command '${error.file}' was not found; btrfs-progs is not installed.`);
  for (const [pattern, make] of RULES) {
    const match = error.stderr.match(pattern);
    if (match) {
      const made = make(match);
      return new BtrfsError(made.code, made.message, error.stderr);
    }
  }
  return new BtrfsError('other', error.message, error.stderr);
}
