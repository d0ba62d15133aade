/**
 * `syncsh daemon`: the service layer's Daemon as a process. SIGTERM or
 * SIGINT stop it cleanly (runs in flight are ended; each leaves its
 * destination at its previous snapshot); `--metrics ADDR:PORT` serves
 * Prometheus text (off by default). Volumes are served over NBD on
 * $SYNCSH_HOME/run/nbd.sock, and on TCP when nbd-listen is set (nbd/service.ts).
 */
import { createServices } from './services/index.js';
import { Daemon, DEFAULT_RETRY, DEFAULT_STALL_MS } from './services/daemon.js';
import { startMetricsServer, type ServiceSample } from './services/metrics.js';
import { healthOf } from './services/auto-sync/status.js';
import { stamp } from './services/service-log.js';
import { NbdService } from './services/nbd/service.js';
import { zvolExports } from './services/zvol-exports.js';
import { CdpDaemon } from './services/cdp/daemon.js';
import { writeNbdClients } from './services/zvol-clients.js';
import type { Services } from './services/index.js';
import { parseHostPort, type HostPort } from './services/host-port.js';

export interface DaemonArgs {
  metrics?: string;
  stallTimeout?: string;
  retryDelay?: string;
}

function seconds(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new Error(`${flag} takes a whole number of seconds, not "${value}".`);
  return n;
}

function parseListen(text: string): HostPort {
  const hp = parseHostPort(text);
  if (!hp) throw new Error(`--metrics takes ADDRESS:PORT, such as 127.0.0.1:9109, not "${text}".`);
  return hp;
}

export function samples(services: Services, now = Date.now()): ServiceSample[] {
  return services.autoSync.list().map((v) => {
    const health = healthOf(v.config, v.run, now);
    return {
      service: v.config.name,
      lagSeconds: health.lagSeconds,
      lastDurationSeconds: v.run.lastRunAt ? v.run.lastDurationMs / 1000 : null,
      lastBytes: v.run.lastBytes,
      failuresTotal: v.run.failures,
      up: health.health === 'up',
      running: v.state === 'running',
    };
  });
}

export async function startDaemon(args: DaemonArgs, env: NodeJS.ProcessEnv): Promise<number> {
  let listen;
  let stallSeconds;
  let retryDelay;
  try {
    listen = args.metrics ? parseListen(args.metrics) : null;
    stallSeconds = seconds('--stall-timeout', args.stallTimeout, DEFAULT_STALL_MS / 1000);
    retryDelay = seconds('--retry-delay', args.retryDelay, DEFAULT_RETRY.baseMs / 1000);
  } catch (error) {
    process.stderr.write(`syncsh daemon: ${(error as Error).message}\n`);
    return 2;
  }
  const services = createServices(env);
  // runs reuse one connection per peer (and its agent) instead of a handshake each
  services.peers.keepWarm();
  const say = (line: string) => process.stdout.write(`${stamp()} ${line}\n`);
  const stop = new AbortController();
  // on, not once: a lazily loaded signal-exit (execa's) re-raises a signal when it finds itself the only listener left
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => stop.abort(new Error(`${sig}`)));
  const metrics = listen ? await startMetricsServer({ ...listen, collect: () => samples(services) }) : null;
  if (metrics) say(`metrics on http://${listen!.host}:${metrics.port}/metrics`);
  const peerTimeout = Number(env.SYNCSH_CDP_PEER_TIMEOUT_MS);
  const cdp = new CdpDaemon(services, { log: say, peerTimeoutMs: Number.isFinite(peerTimeout) && peerTimeout > 0 ? peerTimeout : undefined });
  try {
    await cdp.start();
  } catch (error) {
    say(`auto-cdp: not mirroring: ${(error as Error).message}`);
  }
  const nbd = new NbdService(
    services.home,
    zvolExports(services, (name, open) => cdp.exportFor(name, open)),
    { log: say, onClientsChanged: (clients) => writeNbdClients(services.home, clients) },
  );
  try {
    await nbd.start();
  } catch (error) {
    say(`NBD: not serving volumes: ${(error as Error).message}`);
  }
  const daemon = new Daemon(services, { stallMs: stallSeconds * 1000, retry: { ...DEFAULT_RETRY, baseMs: retryDelay * 1000 }, alertCommand: services.appliance.alertCommand, say });
  try {
    await daemon.run(stop.signal);
  } finally {
    await Promise.all([metrics?.close(), nbd.close()]);
    await cdp.close();
    services.peers.close();
  }
  return 0;
}
