/**
 * Export sources beside the appliance's zvols (../zvol-exports.ts, what the
 * daemon serves): fixed image files for tests and benchmarks, and which held
 * exports are gone.
 */
import { FileVolume } from './file-volume.js';
import type { ExportSource } from './volume.js';

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

/** of the exports clients hold, those the source no longer has (destroyed): the server withdraws them */
export async function goneExports(source: ExportSource, held: string[]): Promise<string[]> {
  if (!held.length) return [];
  const present = new Set((await source.list()).map((e) => e.name));
  return [...new Set(held)].filter((n) => !present.has(n));
}
