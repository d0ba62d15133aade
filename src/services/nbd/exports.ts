/**
 * What this appliance exports over NBD. Today: every fs-driver volume (a
 * dataset of kind 'volume', its image `<fs root>/<name>/volume.img`),
 * exported as its driver-qualified name (`fs:tank/vm1`) and looked up when a
 * client opens it, so a volume created while the daemon runs is there at
 * once. The zvol engine replaces this module's applianceExports.
 */
import path from 'node:path';
import type { Storage } from '../storage/registry.js';
import { Layout, VOLUME_FILE } from '../storage/fs/layout.js';
import { FileVolume } from './file-volume.js';
import type { BlockVolume, ExportSource } from './volume.js';

/** fixed name → image file exports (tests, benchmarks) */
export function fileExports(files: Record<string, { path: string; readOnly?: boolean; description?: string }>): ExportSource {
  return {
    async list() {
      return Object.entries(files).map(([name, f]) => ({ name, description: f.description ?? `raw image ${f.path}` }));
    },
    async open(name) {
      const f = Object.hasOwn(files, name) ? files[name] : undefined;
      return f ? FileVolume.open(f.path, { readOnly: f.readOnly }) : null;
    },
  };
}

const PREFIX = 'fs:';

/** the appliance's fs volumes; only mounted ones are served (an unmounted volume's image is out of place) */
export function applianceExports(storage: Storage, fsRoot: string): ExportSource {
  const layout = new Layout(fsRoot);
  const volumes = async () => {
    const driver = await storage.usable('fs').catch(() => null);
    if (!driver) return [];
    return (await driver.listDatasets()).filter((d) => d.kind === 'volume' && d.mounted);
  };
  return {
    async list() {
      return (await volumes()).map((d) => ({ name: PREFIX + d.name, description: `fs volume, ${d.volsize ?? 0} bytes` }));
    },
    async open(name): Promise<BlockVolume | null> {
      if (!name.startsWith(PREFIX)) return null;
      const found = (await volumes()).find((d) => PREFIX + d.name === name);
      if (!found) return null;
      return FileVolume.open(path.join(layout.mountpoint(found.name), VOLUME_FILE), { preferredBlockSize: 64 * 1024 });
    },
  };
}

/** of the exports clients hold, those the source no longer has (destroyed): the server withdraws them */
export async function goneExports(source: ExportSource, held: string[]): Promise<string[]> {
  if (!held.length) return [];
  const present = new Set((await source.list()).map((e) => e.name));
  return [...new Set(held)].filter((n) => !present.has(n));
}
