/**
 * A file's block list: one name per chunk, a sha256 or ZERO_BLOCK ("0").
 * Zvol manifests (64 KiB chunks) also write a run of n > 1 zero chunks as
 * one name, "0*n": an empty 1 TiB zvol is 16 million chunks, which as one
 * name each made its snapshot, send and receive take 13 s; as one run they
 * cost nothing. Lists are kept canonical (runs as long as they go, a single
 * zero chunk as "0"), so two lists of the same content are equal names for
 * names. File trees (1 MiB chunks) never have runs.
 */
import { ZERO_BLOCK } from './block-store.js';

const RUN = /^0\*([1-9]\d*)$/;

/** How many zero chunks a name stands for: 1 for ZERO_BLOCK, n for "0*n", 0 for a stored block. */
export function zeroRun(name: string): number {
  if (name === ZERO_BLOCK) return 1;
  if (name.charCodeAt(0) !== 48 || name.charCodeAt(1) !== 42) return 0;
  const m = RUN.exec(name);
  return m ? Number(m[1]) : 0;
}

export function isZeroRun(name: string): boolean {
  return name.length > 1 && RUN.test(name);
}

export function chunkCount(blocks: readonly string[]): number {
  let n = 0;
  for (const h of blocks) n += zeroRun(h) || 1;
  return n;
}

/** Builds a canonical block list. */
export class BlockListBuilder {
  private readonly out: string[] = [];
  private zeros = 0;

  constructor(private readonly runs: boolean) {}

  push(name: string): void {
    const z = zeroRun(name);
    if (z) return this.zero(z);
    this.end();
    this.out.push(name);
  }

  zero(n: number): void {
    if (!this.runs) {
      for (let i = 0; i < n; i++) this.out.push(ZERO_BLOCK);
      return;
    }
    this.zeros += n;
  }

  private end(): void {
    if (this.zeros === 1) this.out.push(ZERO_BLOCK);
    else if (this.zeros > 1) this.out.push(`0*${this.zeros}`);
    this.zeros = 0;
  }

  done(): string[] {
    this.end();
    return this.out;
  }
}

/** Call fn(first chunk, count, name) for each name of the list (count > 1 only for runs). */
export function forEachRun(blocks: readonly string[], fn: (first: number, count: number, name: string) => void): void {
  let at = 0;
  for (const h of blocks) {
    const n = zeroRun(h) || 1;
    fn(at, n, h);
    at += n;
  }
}

/**
 * The list with some chunks replaced (`updates`: chunk -> name), cut or
 * padded with zero chunks to `chunks`. O(names + updates).
 */
export function patchBlocks(blocks: readonly string[], updates: ReadonlyMap<number, string>, chunks: number): string[] {
  const b = new BlockListBuilder(true);
  const keys = [...updates.keys()].sort((x, y) => x - y);
  let k = 0;
  let at = 0;
  const emit = (first: number, count: number, name: string) => {
    // [first, first + count) of `name`, with the updates inside it
    let pos = first;
    const end = Math.min(first + count, chunks);
    while (pos < end) {
      while (k < keys.length && keys[k] < pos) k++;
      const next = k < keys.length && keys[k] < end ? keys[k] : end;
      if (next > pos) {
        if (zeroRun(name)) b.zero(next - pos);
        else b.push(name);
        pos = next;
      }
      if (pos < end && k < keys.length && keys[k] === pos) {
        b.push(updates.get(pos)!);
        pos++;
        k++;
      }
    }
  };
  for (const h of blocks) {
    const n = zeroRun(h) || 1;
    if (at >= chunks) break;
    emit(at, n, h);
    at += n;
  }
  if (at < chunks) emit(at, chunks - at, ZERO_BLOCK);
  return b.done();
}

/** The name of each chunk in `wanted` (sorted), from a list. */
export function namesAt(blocks: readonly string[], wanted: readonly number[]): Map<number, string> {
  const out = new Map<number, string>();
  let w = 0;
  forEachRun(blocks, (first, count, name) => {
    while (w < wanted.length && wanted[w] < first + count) {
      if (wanted[w] >= first) out.set(wanted[w], zeroRun(name) ? ZERO_BLOCK : name);
      w++;
    }
  });
  for (; w < wanted.length; w++) out.set(wanted[w], ZERO_BLOCK);
  return out;
}
