/**
 * `syncsh demo`: a demo appliance in ./.demo (or SYNCSH_HOME) with a folder
 * of sample files, an auto-sync service to a second folder on the built-in
 * engine, and a live replication: every few seconds a file changes and the
 * service runs. Then the interactive shell, to look at it all.
 */
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createServices, type Services } from './services/index.js';
import { processTerminal } from './shell/terminal.js';
import { createDialogs } from './shell/dialogs.js';
import { ShellSession } from './shell/session.js';
import { runRepl } from './shell/repl.js';

const SOURCE = 'fs:tank/docs';
const DESTINATION = 'fs:tank/backup';

async function prepare(services: Services): Promise<string> {
  const existing = services.autoSync.list().find((v) => v.config.source.dataset === SOURCE);
  if (existing) return existing.config.name;
  const folders = await services.folders.list();
  if (!folders.some((f) => f.qualified === 'fs:tank')) await services.folders.create('fs:tank');
  const docs = folders.find((f) => f.qualified === SOURCE) ?? (await services.folders.create(SOURCE));
  const root = docs.mountpoint!;
  await mkdir(path.join(root, 'reports'), { recursive: true });
  await writeFile(path.join(root, 'README.txt'), 'Files in this folder are replicated by auto-sync to fs:tank/backup.\n');
  for (let i = 1; i <= 12; i++) await writeFile(path.join(root, 'reports', `report-${String(i).padStart(2, '0')}.txt`), `Report ${i}\n`.repeat(200 * i));
  const config = await services.autoSync.create({ fromFs: SOURCE, toFs: DESTINATION, type: 'minute', period: 1, keepSrc: 5, keepDst: 5, maxDelay: 120, comment: 'demo' });
  return config.name;
}

/** A change and a run every `everyMs`, until the process ends (the daemon takes this over later). */
function liveReplication(services: Services, name: string, everyMs: number): NodeJS.Timeout {
  const tick = async () => {
    const source = (await services.folders.list(SOURCE))[0];
    if (source?.mountpoint) await appendFile(path.join(source.mountpoint, 'journal.txt'), `${new Date().toISOString()} edit\n`);
    const view = services.autoSync.view(name);
    if (view.config.enabled && view.state !== 'maintenance') await services.autoSync.run(name).catch(() => undefined);
  };
  const timer = setInterval(() => void tick().catch(() => undefined), everyMs);
  timer.unref();
  void tick().catch(() => undefined);
  return timer;
}

export async function startDemo(env: NodeJS.ProcessEnv): Promise<number> {
  const demoEnv = { ...env, SYNCSH_HOME: env.SYNCSH_HOME || path.resolve('.demo'), SYNCSH_APPLIANCE_ID: env.SYNCSH_APPLIANCE_ID || 'demo' };
  const services = createServices(demoEnv);
  const name = await prepare(services);
  const every = Number(env.SYNCSH_DEMO_INTERVAL_MS) || 15_000;
  const timer = liveReplication(services, name, every);
  const term = processTerminal(demoEnv);
  const session = new ShellSession(services, term, createDialogs(term));
  session.print([
    `Demo appliance in ${services.home.root}: auto-sync:${name} replicates ${SOURCE} => ${DESTINATION} on the built-in engine,`,
    `with a change and a run every ${Math.round(every / 1000)} seconds. Try: show auto-sync | show auto-sync :${name} logtail -f | show folder | show snapshot`,
  ]);
  try {
    return term.interactive ? await runRepl(session, services.home.historyFile) : 0;
  } finally {
    clearInterval(timer);
  }
}
