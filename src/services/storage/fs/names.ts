/**
 * Dataset and snapshot names of the fs driver, checked before any path is
 * built from them: a name is the only thing that turns into file paths, so a
 * bad one (`..`, `/`, odd characters) must never get that far.
 */

const COMPONENT = /^[A-Za-z0-9_.:-]+$/;
const MAX_COMPONENT = 200;
/**
 * The whole name, as the metadata keeps it in one file name (encodeName) with
 * suffixes of up to ~40 characters (`.index.lock.takeover.PID.N.new`), under
 * the 255-byte limit of a file name.
 */
export const MAX_DATASET_NAME = 200;

/** The metadata area lives at `<root>/.syncsh`, so no pool may take that name. */
export const RESERVED_POOL = '.syncsh';

function badCharacter(part: string): string {
  return JSON.stringify([...part].find((c) => !/[A-Za-z0-9_.:-]/.test(c)));
}

/** Throws a sentence naming the bad value; returns the name's components. */
export function checkDatasetName(name: string): string[] {
  if (typeof name !== 'string' || name === '') throw new Error('A dataset name is required, such as tank/data.');
  if (name.startsWith('/')) throw new Error(`The dataset name must not start with "/": ${name}.`);
  if (name.endsWith('/')) throw new Error(`The dataset name must not end with "/": ${name}.`);
  const parts = name.split('/');
  for (const part of parts) {
    if (part === '..' || part === '.') throw new Error(`The dataset name must not contain "${part}": ${name}.`);
    if (!part) throw new Error(`The dataset name has an empty component: ${name}.`);
    if (!COMPONENT.test(part)) {
      throw new Error(`The dataset name must not contain ${badCharacter(part)}: ${name} (letters, digits, "_", ".", ":" and "-" only).`);
    }
    if (part.length > MAX_COMPONENT) throw new Error(`The dataset name has a component longer than ${MAX_COMPONENT} characters: ${name}.`);
  }
  if (name.length > MAX_DATASET_NAME) {
    throw new Error(`The dataset name ${name} is ${name.length} characters long; the fs driver allows at most ${MAX_DATASET_NAME} in all, "/" included, because its metadata keeps the whole name as one file name.`);
  }
  if (parts[0] === RESERVED_POOL) throw new Error(`The pool name ${RESERVED_POOL} is reserved for the fs driver's metadata: ${name}.`);
  return parts;
}

export function checkSnapshotName(dataset: string, name: string): void {
  if (typeof name !== 'string' || name === '') throw new Error(`A snapshot name is required for ${dataset}.`);
  if (name === '.' || name === '..') throw new Error(`The snapshot name must not be "${name}": ${dataset}@${name}.`);
  if (!COMPONENT.test(name)) {
    throw new Error(`The snapshot name must not contain ${badCharacter(name)}: ${dataset}@${name} (letters, digits, "_", ".", ":" and "-" only).`);
  }
  if (name.length > MAX_COMPONENT) throw new Error(`The snapshot name is longer than ${MAX_COMPONENT} characters: ${dataset}@${name}.`);
}

export function poolOf(name: string): string {
  return name.split('/')[0];
}

export function parentOf(name: string): string | null {
  const at = name.lastIndexOf('/');
  return at < 0 ? null : name.slice(0, at);
}

export function isDescendant(name: string, ancestor: string): boolean {
  return name.startsWith(`${ancestor}/`);
}

/** `tank/a/b` -> `tank+a+b`: one flat directory name; `+` cannot occur in a component. */
export function encodeName(name: string): string {
  return name.replaceAll('/', '+');
}

export function decodeName(encoded: string): string {
  return encoded.replaceAll('+', '/');
}

/** A relative path inside a dataset (as carried by manifests): no empty, `.` or `..` parts, no NUL. */
export function isSafeRelativePath(p: string): boolean {
  if (p === '') return true;
  if (p.includes('\0')) return false;
  // Component by component without splitting: this runs for every entry of every received manifest.
  for (let start = 0; start <= p.length; ) {
    let end = p.indexOf('/', start);
    if (end < 0) end = p.length;
    const len = end - start;
    if (len === 0 || (len === 1 && p[start] === '.') || (len === 2 && p[start] === '.' && p[start + 1] === '.')) return false;
    start = end + 1;
  }
  return true;
}
