/**
 * Console passwords are kept as scrypt hashes, never in clear:
 *
 *   scrypt$N$r$p$SALT$HASH        (SALT and HASH in base64, no padding)
 *
 * A random 16-byte salt per hash; verification recomputes the hash with the
 * stored parameters and compares with timingSafeEqual. scrypt runs in
 * libuv's thread pool (it does not hold up other sessions) and at most two
 * at once: each takes 128·N·r bytes (32 MiB by default), so a burst of
 * login attempts waits instead of taking all the memory.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';

export interface ScryptParams {
  /** cost, a power of two */
  N: number;
  /** block size */
  r: number;
  /** parallelism */
  p: number;
}

/**
 * 32 MiB and about a tenth of a second per check. OWASP asks for N=2^17 (128 MiB);
 * 2^15 keeps an appliance's memory in bounds under a burst of attempts. Each entry
 * keeps its own parameters, so raising these later leaves existing entries valid.
 */
export const DEFAULT_PARAMS: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** what a stored hash may ask for: nothing in a file can make a check take gigabytes or minutes */
const MAX_N = 2 ** 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_MEMORY = 256 * 2 ** 20;

export interface ParsedHash {
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

function checkParams({ N, r, p }: ScryptParams): string | null {
  if (!Number.isInteger(N) || N < 2 || N > MAX_N || (N & (N - 1)) !== 0) return `N must be a power of two from 2 to ${MAX_N}, not ${N}`;
  if (!Number.isInteger(r) || r < 1 || r > MAX_R) return `r must be from 1 to ${MAX_R}, not ${r}`;
  if (!Number.isInteger(p) || p < 1 || p > MAX_P) return `p must be from 1 to ${MAX_P}, not ${p}`;
  if (128 * N * r > MAX_MEMORY) return `N=${N} with r=${r} would take more than ${MAX_MEMORY >> 20} MiB`;
  return null;
}

/** The parts of a stored hash; throws a sentence saying what is wrong with it. */
export function parseHash(text: string): ParsedHash {
  const parts = text.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') throw new Error('It is not a scrypt$N$r$p$salt$hash entry.');
  const [N, r, p] = parts.slice(1, 4).map((s) => (/^\d{1,8}$/.test(s) ? Number(s) : NaN));
  const wrong = checkParams({ N, r, p });
  if (wrong) throw new Error(`Its scrypt parameters are out of bounds: ${wrong}.`);
  if (!/^[A-Za-z0-9+/]+$/.test(parts[4]) || !/^[A-Za-z0-9+/]+$/.test(parts[5])) throw new Error('Its salt or hash is not base64.');
  const salt = Buffer.from(parts[4], 'base64');
  const hash = Buffer.from(parts[5], 'base64');
  if (salt.length < 8) throw new Error(`Its salt is ${salt.length} bytes; at least 8 are needed.`);
  if (hash.length < 16 || hash.length > 64) throw new Error(`Its hash is ${hash.length} bytes, not 16 to 64.`);
  return { params: { N, r, p }, salt, hash };
}

// ---- at most two scrypt computations at once ----

const MAX_RUNNING = 2;
let running = 0;
const waiting: (() => void)[] = [];

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_RUNNING) await new Promise<void>((resolve) => waiting.push(resolve));
  else running++;
  try {
    return await fn();
  } finally {
    // the slot passes to the next in line, or is freed
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

function derive(password: string, salt: Buffer, { N, r, p }: ScryptParams, length: number): Promise<Buffer> {
  return limited(
    () =>
      new Promise<Buffer>((resolve, reject) => {
        scryptCallback(password.normalize('NFC'), salt, length, { N, r, p, maxmem: 128 * N * r + (1 << 20) }, (error, key) => (error ? reject(error) : resolve(key)));
      }),
  );
}

/** A new hash of `password`, with a random salt. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_PARAMS): Promise<string> {
  const wrong = checkParams(params);
  if (wrong) throw new Error(`The scrypt parameters are out of bounds: ${wrong}.`);
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, params, HASH_BYTES);
  return `scrypt$${params.N}$${params.r}$${params.p}$${b64(salt)}$${b64(hash)}`;
}

/** Whether `password` is the one `stored` was made from; false for an entry that is no scrypt hash. */
export async function verifyPassword(password: string, stored: string | ParsedHash): Promise<boolean> {
  let parsed: ParsedHash;
  try {
    parsed = typeof stored === 'string' ? parseHash(stored) : stored;
  } catch {
    return false;
  }
  const computed = await derive(password, parsed.salt, parsed.params, parsed.hash.length);
  return timingSafeEqual(computed, parsed.hash);
}

/**
 * Takes as long as checking a real entry with the default parameters, and is
 * false: a user with no password is refused no faster than a wrong password.
 */
export async function verifyNothing(password: string): Promise<false> {
  await derive(password, randomBytes(SALT_BYTES), DEFAULT_PARAMS, HASH_BYTES);
  return false;
}
