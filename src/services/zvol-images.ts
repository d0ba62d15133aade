/**
 * Seeding (002_ SIOS DataKeeper, method 1): a zvol's snapshot exported as a
 * raw image (what `dd` of the disk gives), optionally gzipped, with its
 * sha256; a zvol created from such an image (or any raw disk image) on
 * another appliance, the checksum verified before anything is created.
 *
 * Image files live in `$SYNCSH_HOME/images/` (made by the administrator's
 * choice of what to put there): a name is taken relative to it and a path
 * that leads outside it is refused, so nothing typed (also over the SSH
 * console) reads or writes any other file. The sha256 is of the raw image,
 * compressed or not, so `sha256sum` of a `dd` image is the one to give.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { createGunzip, createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { PassThrough, type Readable } from 'node:stream';
import type { Home } from './home.js';
import type { Storage } from './storage/registry.js';
import { formatDataset, parseDataset } from './datasets.js';
import { writeFileAtomic, writeJsonAtomic } from './storage/fs/files.js';
import { rename } from 'node:fs/promises';
import type { ZvolService } from './zvols.js';

const CHUNK = 64 << 10;
const SHA256 = /^[0-9a-f]{64}$/;

export interface ExportRecord {
  zvol: string;
  file: string;
  sha256: string;
  compress: 'gzip' | null;
  snapshot: string;
  snapshotId: string;
  size: number;
  createdAt: string;
}

/** shipped beside an exported image: the snapshot it is (identity and chunk names) */
export function seedFile(image: string): string {
  return `${image}.seed.json`;
}

export function imagesDir(home: Home): string {
  return path.join(home.root, 'images');
}

/** `FILE` inside the images directory, or a sentence naming it. */
export function imagePath(home: Home, file: string, mustExist: boolean): string {
  const dir = imagesDir(home);
  mkdirSync(dir, { recursive: true });
  if (!file || file.includes('\0')) throw new Error(`An image file name is required, such as vm1.img (kept in ${dir}).`);
  const full = path.resolve(dir, file);
  const inside = (p: string, root: string) => p.startsWith(root + path.sep);
  if (!inside(full, dir)) throw new Error(`The image ${file} is outside ${dir}; images are read and written there only (put it there, or give its name).`);
  if (mustExist) {
    if (!existsSync(full)) throw new Error(`The image ${file} does not exist in ${dir}.`);
    const real = realpathSync(full);
    if (!inside(real, realpathSync(dir))) throw new Error(`The image ${file} leads outside ${dir} (to ${real}); images are read there only.`);
  } else if (existsSync(full)) {
    throw new Error(`The image ${file} already exists in ${dir}; remove it or choose another name.`);
  }
  return full;
}

async function gzipMagic(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    return bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** the raw bytes of an image file, unzipped when it is gzip (by its magic, not its name) */
async function rawStream(file: string): Promise<{ stream: Readable; gzip: boolean }> {
  const gzip = await gzipMagic(file);
  const input = createReadStream(file, { highWaterMark: 1 << 20 });
  if (!gzip) return { stream: input, gzip };
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  pipeline(input, createGunzip(), out).catch((error: Error) => out.destroy(error));
  return { stream: out, gzip };
}

/** Read the raw image in 64 KiB chunks (the last may be short). */
async function* chunks(stream: Readable): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let n = 0;
  for await (const piece of stream) {
    let buf = piece as Buffer;
    while (buf.length) {
      const take = Math.min(CHUNK - n, buf.length);
      pending.push(buf.subarray(0, take));
      n += take;
      buf = buf.subarray(take);
      if (n === CHUNK) {
        yield pending.length === 1 ? pending[0] : Buffer.concat(pending);
        pending = [];
        n = 0;
      }
    }
  }
  if (n) yield Buffer.concat(pending);
}

function describeRead(file: string, gzip: boolean, error: Error): Error {
  const why = gzip ? `it is not a complete gzip file (${error.message})` : error.message;
  return new Error(`Cannot read the image ${path.basename(file)}: ${why}; nothing was created.`);
}

export class ZvolImages {
  constructor(
    private readonly home: Home,
    private readonly storage: Storage,
    private readonly zvols: ZvolService,
  ) {}

  private get recordsFile(): string {
    return path.join(this.home.config, 'zvol-exports.json');
  }

  exports(): ExportRecord[] {
    try {
      return JSON.parse(readFileSync(this.recordsFile, 'utf8')) as ExportRecord[];
    } catch {
      return [];
    }
  }

  /**
   * Snapshot the zvol (consistent while it is served), hold that snapshot,
   * and write it as a raw image (sparse where it is zero; gzip when asked).
   */
  async exportImage(dataset: string, file: string, opts: { compress?: 'gzip' } = {}): Promise<ExportRecord> {
    const z = await this.zvols.one(dataset);
    const target = imagePath(this.home, file, false);
    const ref = parseDataset(z.name);
    const driver = await this.storage.usable(ref.driver);
    if (!driver.readVolume) throw new Error(`The ${ref.driver} driver cannot export zvol images.`);
    // two exports in one second are two snapshots: the stamp orders them, the suffix keeps them apart
    const snapshot = `export-${new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
    const snap = await driver.createSnapshot(ref.name, snapshot, { recursive: false });
    await driver.holdSnapshot(ref.name, snapshot, true); // the seed's base: kept until the operator releases it
    const hash = createHash('sha256');
    const zero = Buffer.alloc(1 << 20);
    const tmp = `${target}.partial`;
    try {
      if (opts.compress === 'gzip') {
        const gzip = createGzip();
        const out = (await open(tmp, 'wx', 0o600)).createWriteStream();
        const done = pipeline(gzip, out);
        const put = async (b: Buffer) => {
          hash.update(b);
          if (!gzip.write(b)) await new Promise((r) => gzip.once('drain', r));
        };
        for await (const piece of driver.readVolume(ref.name, snapshot)) {
          if (piece.data) await put(piece.data);
          else for (let left = piece.length; left > 0; left -= zero.length) await put(zero.subarray(0, Math.min(zero.length, left)));
        }
        gzip.end();
        await done;
      } else {
        const fh = await open(tmp, 'wx', 0o600);
        try {
          for await (const piece of driver.readVolume(ref.name, snapshot)) {
            if (piece.data) {
              hash.update(piece.data);
              await fh.write(piece.data, 0, piece.data.length, piece.offset);
            } else {
              for (let left = piece.length; left > 0; left -= zero.length) hash.update(zero.subarray(0, Math.min(zero.length, left)));
            }
          }
          await fh.truncate(z.size); // holes for the zero end
          await fh.datasync();
        } finally {
          await fh.close();
        }
      }
      // The seed beside it: the snapshot's identity and chunk names, so the copy made from the image can be that snapshot.
      if (driver.volumeSeed) writeFileAtomic(seedFile(target), await driver.volumeSeed(ref.name, snapshot));
      await rename(tmp, target);
    } catch (error) {
      rmSync(tmp, { force: true });
      rmSync(seedFile(target), { force: true });
      throw error;
    }
    const record: ExportRecord = {
      zvol: z.name,
      file: target,
      sha256: hash.digest('hex'),
      compress: opts.compress ?? null,
      snapshot,
      snapshotId: snap.id,
      size: z.size,
      createdAt: new Date().toISOString(),
    };
    writeJsonAtomic(this.recordsFile, [...this.exports(), record]);
    return record;
  }

  /**
   * Create a zvol from a raw image (gzip or not): the image is read whole
   * and its sha256 checked first; only then is the zvol created and the
   * image written into it (zero chunks stay holes). The image is read again
   * for that and checked again: changed meanwhile, the zvol is removed.
   */
  async createFromImage(dataset: string, file: string, sha256: string, opts: { blockSize?: number } = {}): Promise<{ zvol: string; size: number; sha256: string; chunks: number; stored: number; seed: string | null }> {
    const want = sha256.trim().toLowerCase();
    if (!SHA256.test(want)) throw new Error(`The --sha256 value must be 64 hexadecimal digits, not "${sha256}".`);
    const ref = parseDataset(dataset);
    const qualified = formatDataset(ref);
    const source = imagePath(this.home, file, true);
    const first = await this.scan(source);
    if (first.sha256 !== want) throw new Error(`The image ${file} has sha256 ${first.sha256}, not ${want} as given; nothing was created.`);
    const blockSize = opts.blockSize ?? 64 << 10;
    if (first.size === 0) throw new Error(`The image ${file} is empty; nothing was created.`);
    if (first.size % blockSize !== 0) throw new Error(`The image ${file} is ${first.size} bytes, not a multiple of the block size (${blockSize} bytes); nothing was created.`);
    await this.zvols.create(qualified, { size: first.size, blockSize });
    const driver = await this.storage.usable(ref.driver);
    try {
      const vol = await driver.openVolume!(ref.name);
      const hash = createHash('sha256');
      let at = 0;
      let stored = 0;
      let count = 0;
      try {
        const { stream, gzip } = await rawStream(source);
        try {
          for await (const c of chunks(stream)) {
            hash.update(c);
            if (c.some((b) => b !== 0)) {
              await vol.write(at, c, { fua: false });
              stored++;
            }
            at += c.length;
            count++;
          }
        } catch (error) {
          throw describeRead(source, gzip, error as Error);
        }
        await vol.flush();
      } finally {
        await vol.close();
      }
      if (hash.digest('hex') !== want || at !== first.size) throw new Error(`The image ${file} changed while it was read; nothing was created.`);
      // Exported by syncsh: the copy becomes the exported snapshot, so the first auto-sync from it sends only what changed since.
      let seed: string | null = null;
      const seedPath = seedFile(source);
      if (existsSync(seedPath) && driver.adoptVolumeSeed) {
        imagePath(this.home, path.relative(imagesDir(this.home), seedPath), true); // inside the images directory, as the image
        seed = (await driver.adoptVolumeSeed(ref.name, readFileSync(seedPath, 'utf8'))).name;
      }
      return { zvol: qualified, size: first.size, sha256: want, chunks: count, stored, seed };
    } catch (error) {
      await driver.destroyDataset(ref.name, { recursive: true }).catch(() => undefined);
      throw error;
    }
  }

  private async scan(file: string): Promise<{ sha256: string; size: number }> {
    const { stream, gzip } = await rawStream(file);
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const piece of stream) {
        hash.update(piece as Buffer);
        size += (piece as Buffer).length;
      }
    } catch (error) {
      throw describeRead(file, gzip, error as Error);
    }
    return { sha256: hash.digest('hex'), size };
  }
}
