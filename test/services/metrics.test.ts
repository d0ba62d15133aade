import test from 'ava';
import net from 'node:net';
import { renderMetrics, startMetricsServer, escapeLabelValue, METRICS_CONTENT_TYPE, type ServiceSample } from '../../src/services/metrics.js';

const sample = (over: Partial<ServiceSample> = {}): ServiceSample => ({
  service: 'vol-folder-000',
  lagSeconds: 42.5,
  lastDurationSeconds: 3,
  lastBytes: 1048576,
  failuresTotal: 2,
  up: true,
  running: false,
  ...over,
});

test('every family has HELP and TYPE, then one series per service', (t) => {
  const text = renderMetrics([sample(), sample({ service: 'tank-b-001', lagSeconds: 900, up: false, running: true, failuresTotal: 0 })]);
  t.true(text.endsWith('\n'));
  const lines = text.trimEnd().split('\n');
  t.deepEqual(lines.slice(0, 4), [
    '# HELP syncsh_autosync_lag_seconds Seconds since the last successful sync of the service.',
    '# TYPE syncsh_autosync_lag_seconds gauge',
    'syncsh_autosync_lag_seconds{service="vol-folder-000"} 42.5',
    'syncsh_autosync_lag_seconds{service="tank-b-001"} 900',
  ]);
  for (const [name, type] of [
    ['syncsh_autosync_lag_seconds', 'gauge'],
    ['syncsh_autosync_last_duration_seconds', 'gauge'],
    ['syncsh_autosync_last_bytes', 'gauge'],
    ['syncsh_autosync_failures_total', 'counter'],
    ['syncsh_autosync_up', 'gauge'],
    ['syncsh_autosync_running', 'gauge'],
  ]) {
    t.true(lines.includes(`# TYPE ${name} ${type}`), name);
    t.is(lines.filter((l) => l.startsWith(`${name}{`)).length, 2, `${name} has a series per service`);
  }
  t.true(lines.includes('syncsh_autosync_last_bytes{service="vol-folder-000"} 1048576'));
  t.true(lines.includes('syncsh_autosync_failures_total{service="vol-folder-000"} 2'));
  t.true(lines.includes('syncsh_autosync_up{service="vol-folder-000"} 1'));
  t.true(lines.includes('syncsh_autosync_up{service="tank-b-001"} 0'));
  t.true(lines.includes('syncsh_autosync_running{service="tank-b-001"} 1'));
  // Each family's lines are together, as the format requires.
  const families = lines.filter((l) => !l.startsWith('#')).map((l) => l.slice(0, l.indexOf('{')));
  t.deepEqual(
    families,
    [...new Set(families)].flatMap((f) => [f, f]),
  );
});

test('a service that never synced has no lag or duration series; special values are spelled out', (t) => {
  const text = renderMetrics([sample({ lagSeconds: null, lastDurationSeconds: null, lastBytes: Number.NaN, failuresTotal: Infinity })]);
  t.false(text.includes('syncsh_autosync_lag_seconds{'));
  t.false(text.includes('syncsh_autosync_last_duration_seconds{'));
  t.true(text.includes('# TYPE syncsh_autosync_lag_seconds gauge'), 'the family is still described');
  t.true(text.includes('syncsh_autosync_last_bytes{service="vol-folder-000"} NaN'));
  t.true(text.includes('syncsh_autosync_failures_total{service="vol-folder-000"} +Inf'));
  t.is(
    renderMetrics([])
      .split('\n')
      .filter((l) => l && !l.startsWith('#')).length,
    0,
  );
});

test('label values are escaped; duplicate services are refused', (t) => {
  t.is(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  const text = renderMetrics([sample({ service: 'we"ird\\name\n' })]);
  t.true(text.includes('syncsh_autosync_up{service="we\\"ird\\\\name\\n"} 1'));
  t.throws(() => renderMetrics([sample(), sample()]), { message: 'The service "vol-folder-000" appears twice in the metrics samples.' });
});

test('the server serves GET /metrics from collect() and 404s everything else', async (t) => {
  let calls = 0;
  const server = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    collect: async () => {
      calls++;
      return [sample({ failuresTotal: calls })];
    },
  });
  t.teardown(() => server.close());
  t.true(server.port > 0);
  const base = `http://127.0.0.1:${server.port}`;

  const first = await fetch(`${base}/metrics`);
  t.is(first.status, 200);
  t.is(first.headers.get('content-type'), METRICS_CONTENT_TYPE);
  t.true((await first.text()).includes('syncsh_autosync_failures_total{service="vol-folder-000"} 1'));
  const second = await fetch(`${base}/metrics?debug=1`);
  t.true((await second.text()).includes('syncsh_autosync_failures_total{service="vol-folder-000"} 2'), 'collected afresh on each scrape');

  const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
  t.is(head.status, 200);
  t.is(await head.text(), '');

  for (const where of ['/', '/metrics/', '/favicon.ico']) {
    const res = await fetch(`${base}${where}`);
    t.is(res.status, 404, where);
    await res.text();
  }
  const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
  t.is(post.status, 405);
  t.is(post.headers.get('allow'), 'GET, HEAD');
  await post.text();
});

test('a failing collect gives a 500 and the server keeps serving', async (t) => {
  let fail = true;
  const server = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    collect: () => {
      if (fail) throw new Error('services.json is unreadable');
      return [];
    },
  });
  t.teardown(() => server.close());
  const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
  t.is(res.status, 500);
  t.is(await res.text(), 'Collecting the metrics failed: services.json is unreadable\n');
  fail = false;
  t.is((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status, 200);
});

test('close() returns even with a keep-alive connection open, and frees the port', async (t) => {
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, collect: () => [sample()] });
  const res = await fetch(`http://127.0.0.1:${server.port}/metrics`); // fetch keeps the connection alive
  await res.text();
  await server.close();
  await server.close(); // a second close is harmless
  const again = await startMetricsServer({ host: '127.0.0.1', port: server.port, collect: () => [] });
  t.is(again.port, server.port);
  await again.close();
});

test('a port in use is refused with a sentence naming the address', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  await t.throwsAsync(startMetricsServer({ host: '127.0.0.1', port, collect: () => [] }), {
    message: `The metrics server cannot listen on 127.0.0.1 port ${port}: EADDRINUSE.`,
  });
});
