/**
 * Exclude patterns of the fs driver: gitignore-style (`*.tmp`, `cache/`,
 * `/build/**`, `!keep.tmp`), evaluated relative to the dataset's root by
 * the `ignore` package. A directory that is excluded is not walked into,
 * so nothing under it can be included again (as in git).
 */
import { ignore } from '../../lazy.js';

/** says whether a path (relative to the dataset, '/'-separated) is left out */
export type ExcludeMatcher = (rel: string, isDir: boolean) => boolean;

const EVERYTHING = new Set(['*', '**', '/', '/*', '/**', '**/*', '/**/*']);

/** checks each pattern; throws a sentence naming the bad one */
export function checkExcludes(patterns: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of patterns) {
    const p = raw.trim();
    if (!p) throw new Error('An exclude pattern must not be empty.');
    if (p.length > 1000) throw new Error(`The exclude pattern "${p.slice(0, 40)}…" is longer than 1000 characters.`);
    if (/[\x00-\x1f\x7f]/.test(p)) throw new Error(`The exclude pattern ${JSON.stringify(p)} must not contain control characters.`);
    if (p.startsWith('#')) throw new Error(`The exclude pattern "${p}" starts with #, which makes it a comment: write \\# for a name that starts with #.`);
    if (EVERYTHING.has(p)) throw new Error(`The exclude pattern "${p}" would leave everything out of the snapshots.`);
    if (/(^|\/)\.\.(\/|$)/.test(p)) throw new Error(`The exclude pattern "${p}" must not name "..": patterns are relative to the dataset.`);
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** the matcher of a list of patterns, or null for none */
export function excludeMatcher(patterns: readonly string[] | undefined): ExcludeMatcher | null {
  if (!patterns?.length) return null;
  const ig = ignore().add([...patterns]);
  return (rel, isDir) => rel !== '' && ig.ignores(isDir ? `${rel}/` : rel);
}
