/**
 * The zvols of this appliance as an NBD ExportSource: the daemon hands this
 * to NbdServer (`new NbdServer({ exports: zvolExports(services), … })`).
 * Export name = driver-qualified dataset name (`fs:tank/vm1`). A zvol made
 * while the daemon runs is listed and opened at once (nothing is cached);
 * one destroyed is gone from the list (the daemon withdraws it).
 */
import type { BlockVolume, ExportSource } from './nbd/volume.js';
import type { Services } from './index.js';
import { parseDataset } from './datasets.js';

/**
 * `mirrored`: the export of a zvol in an auto-cdp mirror (cdp/daemon.ts), or
 * null for a zvol in none; `open` opens the plain zvol.
 */
export type MirroredExport = (qualified: string, open: (readOnly: boolean) => Promise<BlockVolume>) => Promise<BlockVolume | null>;

export function zvolExports(services: Pick<Services, 'zvols' | 'storage'>, mirrored?: MirroredExport): ExportSource {
  return {
    async list() {
      return (await services.zvols.list()).map((z) => ({ name: z.name, description: `zvol ${z.name}, ${z.size} bytes${z.properties.description ? `: ${z.properties.description}` : ''}` }));
    },
    async open(name) {
      let ref;
      try {
        ref = parseDataset(name);
      } catch {
        return null;
      }
      if (name !== `${ref.driver}:${ref.name}`) return null; // export names are always qualified
      const driver = await services.storage.usable(ref.driver).catch(() => null);
      if (!driver?.openVolume || !driver.isZvol || !(await driver.getDataset(ref.name)) || !(await driver.isZvol(ref.name))) return null;
      const readOnly = services.zvols.properties(name).readonly;
      const open = (ro: boolean) => driver.openVolume!(ref.name, { readOnly: ro || readOnly });
      return (readOnly ? null : await mirrored?.(name, open)) ?? open(false);
    },
  };
}
