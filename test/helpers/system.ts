/**
 * Gates for tests that drive real system parts (ZFS, btrfs, sshd, ...).
 *
 * Outside CI a missing part skips the test and says what is missing; under
 * CI (CI=true) it fails, since CI installs everything (.ci/setup-system) and
 * a silent skip there would hide a broken setup.
 *
 *   const zfsTest = await gatedTest(['zfs-fuse'], zfsMissing);   // top level: whole file
 *   zfsTest('sends', async (t) => { ... });
 *
 *   test('x', async (t) => { if (!(await requireSystem(t, ['zfs-fuse'], zfsMissing))) return; ... });
 */
import type { ExecutionContext } from 'ava';
import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';

/** null when present, else a sentence saying what is missing */
export type SystemCheck = () => Promise<string | null>;

export const underCi = (): boolean => process.env.CI === 'true';

async function missingReason(what: readonly string[], check: SystemCheck): Promise<string | null> {
  try {
    const reason = await check();
    return reason ? `${what.join(', ')}: ${reason}` : null;
  } catch (error) {
    return `${what.join(', ')}: the check failed: ${(error as Error).message}`;
  }
}

/**
 * Inside a test: true when the parts are there. Otherwise the test is ended
 * (failed under CI, passed with a "skipped" log outside) and false returned.
 */
export async function requireSystem(t: ExecutionContext, what: readonly string[], check: SystemCheck): Promise<boolean> {
  const reason = await missingReason(what, check);
  if (!reason) return true;
  if (underCi()) {
    t.fail(`Required under CI but missing: ${reason}`);
  } else {
    t.log(`skipped, missing ${reason}`);
    t.pass();
  }
  return false;
}

type Impl = (t: ExecutionContext) => void | Promise<void>;
export interface GatedTest {
  (title: string, impl: Impl): void;
  serial(title: string, impl: Impl): void;
  /** why the tests are skipped or failed; null when they run */
  readonly missing: string | null;
}

/**
 * For a whole test file, decided once before tests are declared: the real
 * `test` when the parts are there, `test.skip` (with a printed reason)
 * outside CI, a failing test under CI.
 */
export async function gatedTest(what: readonly string[], check: SystemCheck): Promise<GatedTest> {
  // loaded here, not at the top: the checks also serve scripts outside ava (the fault campaign)
  const { default: test } = await import('ava');
  const missing = await missingReason(what, check);
  if (!missing) {
    const real = (title: string, impl: Impl) => test(title, impl);
    return Object.assign(real, { serial: (title: string, impl: Impl) => test.serial(title, impl), missing });
  }
  if (underCi()) {
    const failing = (title: string) => test(title, (t) => t.fail(`Required under CI but missing: ${missing}`));
    return Object.assign(failing, { serial: failing, missing });
  }
  console.log(`Skipping tests: missing ${missing}`);
  const skipped = (title: string, impl: Impl) => test.skip(`${title} (missing ${what.join(', ')})`, impl);
  return Object.assign(skipped, { serial: skipped, missing });
}

// ---- building blocks for checks ----

/** the first of `commands` not found on PATH (or at the absolute path given), else null */
export async function missingCommand(...commands: string[]): Promise<string | null> {
  for (const command of commands) {
    if (!(await findCommand(command))) return command;
  }
  return null;
}

export async function findCommand(command: string): Promise<string | null> {
  const candidates = command.includes('/') ? [command] : [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'].filter(Boolean).map((dir) => path.join(dir, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

export const isRoot = (): boolean => process.getuid?.() === 0;

/** whether the kernel knows a filesystem type (or can load it on mount) */
export async function kernelHasFilesystem(type: string): Promise<boolean> {
  const known = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (known.split('\n').some((line) => line.trim().split(/\s+/).at(-1) === type)) return true;
  const release = await readFile('/proc/sys/kernel/osrelease', 'utf8').catch(() => '');
  return access(`/lib/modules/${release.trim()}/kernel/fs/${type}`).then(
    () => true,
    () => false,
  );
}
