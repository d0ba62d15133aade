/**
 * Prometheus metrics for the daemon, in the text exposition format 0.0.4,
 * served over plain node:http at GET /metrics.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One auto-sync service's figures at the moment of a scrape. */
export interface ServiceSample {
  /** instance name, e.g. vol-folder-000 */
  service: string;
  /** seconds since the last successful sync; null when it has never synced (the series is left out) */
  lagSeconds: number | null;
  /** duration of the last run; null when it has never run (left out) */
  lastDurationSeconds: number | null;
  /** bytes sent by the last run */
  lastBytes: number;
  /** failed runs since the service was created */
  failuresTotal: number;
  /** false when the service is warn, maintenance or failure */
  up: boolean;
  /** a run is in progress */
  running: boolean;
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

interface Family {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  value(sample: ServiceSample): number | null;
}

const FAMILIES: Family[] = [
  { name: 'syncsh_autosync_lag_seconds', type: 'gauge', help: 'Seconds since the last successful sync of the service.', value: (s) => s.lagSeconds },
  { name: 'syncsh_autosync_last_duration_seconds', type: 'gauge', help: 'Duration of the last run of the service, in seconds.', value: (s) => s.lastDurationSeconds },
  { name: 'syncsh_autosync_last_bytes', type: 'gauge', help: 'Bytes transferred by the last run of the service.', value: (s) => s.lastBytes },
  { name: 'syncsh_autosync_failures_total', type: 'counter', help: 'Failed runs of the service.', value: (s) => s.failuresTotal },
  { name: 'syncsh_autosync_up', type: 'gauge', help: 'Whether the service is up (1) or in warn, maintenance or failure (0).', value: (s) => (s.up ? 1 : 0) },
  { name: 'syncsh_autosync_running', type: 'gauge', help: 'Whether a run of the service is in progress (1) or not (0).', value: (s) => (s.running ? 1 : 0) },
];

/** Label values escape backslash, double quote and line feed (format 0.0.4). */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes backslash and line feed only. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/**
 * The exposition text for these samples: every family with its HELP and TYPE
 * lines, then one series per service, in the order given. Throws when a
 * service appears twice, since Prometheus rejects duplicate series.
 */
export function renderMetrics(samples: ServiceSample[]): string {
  const seen = new Set<string>();
  for (const sample of samples) {
    if (seen.has(sample.service)) throw new Error(`The service "${sample.service}" appears twice in the metrics samples.`);
    seen.add(sample.service);
  }
  const lines: string[] = [];
  for (const family of FAMILIES) {
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    for (const sample of samples) {
      const value = family.value(sample);
      if (value === null) continue;
      lines.push(`${family.name}{service="${escapeLabelValue(sample.service)}"} ${formatValue(value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export interface MetricsServerOptions {
  /** address to listen on, e.g. 127.0.0.1 or :: */
  host: string;
  /** 0 picks a free port */
  port: number;
  collect: () => ServiceSample[] | Promise<ServiceSample[]>;
}

export interface MetricsServer {
  /** the port actually listened on */
  port: number;
  close(): Promise<void>;
}

/**
 * Serve GET (and HEAD) /metrics; any other path is 404, any other method on
 * /metrics 405. A collect() that fails gives a 500 with its message, and the
 * server keeps serving.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (pathname !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`There is nothing at ${pathname}: metrics are at /metrics.\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end(`The method ${req.method} is not allowed on /metrics: use GET.\n`);
      return;
    }
    void (async () => {
      try {
        const body = renderMetrics(await opts.collect());
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch (error) {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`Collecting the metrics failed: ${(error as Error).message}\n`);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(new Error(`The metrics server cannot listen on ${opts.host} port ${opts.port}: ${error.code ?? error.message}.`, { cause: error }));
    });
    server.listen(opts.port, opts.host, () => resolve());
  });
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      (closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // A scraper's keep-alive connection would otherwise hold close() open.
        server.closeAllConnections();
      })),
  };
}
