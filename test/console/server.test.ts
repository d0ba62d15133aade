/**
 * The console server in this process, driven by ssh2's client: logins,
 * exec statuses, the interactive shell on a pty, refusals (keys, forwarding,
 * sftp), password logins, the audit log, and an error in one session leaving
 * the others be. test/console/ssh-console.test.ts and ssh-password.test.ts
 * do the same with the OpenSSH client.
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ssh2, { type ClientChannel, type ConnectConfig } from 'ssh2';
import { makeAppliance } from '../helpers/appliance.js';
import { AuditLog } from '../../src/console/audit.js';
import { loadOrCreateHostKey } from '../../src/console/host-key.js';
import { PasswordFile } from '../../src/console/passwords.js';
import { generateEd25519 } from '../../src/services/peer/keys.js';
import { consoleApp } from '../../src/console/app.js';
import { recover, stack, type Handler } from '../../src/console/middleware.js';
import { startConsoleServer } from '../../src/console/server.js';

const { Client } = ssh2;

function keyPair() {
  return generateEd25519('operator');
}

interface ConsoleOptions {
  /** wraps the app (a middleware of the test's own) */
  wrap?: (app: Handler) => Handler;
  /** whether passwords are taken, asked at every attempt; absent: the server gets no password file */
  passwordAuth?: () => boolean;
  passwordFailureDelayMs?: number;
}

async function console_(t: ExecutionContext, opts: ConsoleOptions = {}) {
  const { home, services } = makeAppliance(t, 'node1');
  const operator = keyPair();
  const authorizedKeys = path.join(home, 'authorized_keys');
  writeFileSync(authorizedKeys, `# operators\n${operator.public}\n`, { mode: 0o600 });
  const audit = AuditLog.inHome(services.home.logs);
  const logged: string[] = [];
  const handler = stack(
    (opts.wrap ?? ((app) => app))(consoleApp(services)),
    recover((s, e) => logged.push(`conn ${s.conn}: ${e.message}`)),
  );
  const passwords = PasswordFile.inHome(services.home);
  const server = await startConsoleServer(
    {
      hostKey: loadOrCreateHostKey(home).privateKey,
      authorizedKeys,
      audit,
      handler,
      log: (l) => logged.push(l),
      passwords: opts.passwordAuth ? { file: passwords, enabled: opts.passwordAuth } : undefined,
      passwordFailureDelayMs: opts.passwordFailureDelayMs,
    },
    { host: '127.0.0.1', port: 0 },
  );
  t.teardown(() => server.close());
  return { home, services, operator, audit, logged, server, passwords, port: server.address().port };
}

function connectWith(t: ExecutionContext, port: number, config: ConnectConfig): Promise<InstanceType<typeof Client>> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    client.on('ready', () => resolve(client)).on('error', reject);
    // a server that drops the connection (too many tries) sends no error
    client.on('close', () => reject(new Error('The server closed the connection before a login.')));
    client.connect({ host: '127.0.0.1', port, ...config });
    t.teardown(() => client.end());
  });
}

function connect(t: ExecutionContext, port: number, privateKey: string, username = 'alice'): Promise<InstanceType<typeof Client>> {
  return connectWith(t, port, { username, privateKey });
}

function exec(client: InstanceType<typeof Client>, command: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error, stream) => {
      if (error) return reject(error);
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      stream.on('data', (d: Buffer) => (stdout += d));
      stream.stderr.on('data', (d: Buffer) => (stderr += d));
      stream.on('exit', (c: number) => (code = c));
      stream.on('close', () => resolve({ code, stdout, stderr }));
    });
  });
}

// generous: on a busy machine the first dialog loads inquirer for seconds
async function waitFor(read: () => string, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(read())) {
    if (Date.now() > deadline) throw new Error(`Never saw ${pattern} in:\n${read()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return read();
}

test('exec runs one command of the grammar and exits with its status: 0, 1, or 2 for what does not parse', async (t) => {
  const { operator, port, audit, services } = await console_(t);
  await services.folders.create('fs:tank');
  const client = await connect(t, port, operator.private);

  const ok = await exec(client, 'show auto-sync');
  t.is(ok.code, 0);
  t.regex(ok.stdout, /No auto-sync services/);
  t.notRegex(ok.stdout, /\r\n/, 'no pty: no CRLF translation');

  const typo = await exec(client, 'shwo');
  t.is(typo.code, 2);
  t.regex(typo.stderr, /Error: Unknown command 'shwo'.*Did you mean 'show'\?/);

  const failed = await exec(client, 'show folder fs:nope');
  t.is(failed.code, 1);
  t.regex(failed.stderr, /The folder fs:nope does not exist/);

  // no way out to the operating system: these are words the grammar does not know
  for (const escape of ['; ls', '$(id)', '`id`', 'show auto-sync; id', 'show auto-sync && id', '| sh', '!sh']) {
    const r = await exec(client, escape);
    t.is(r.code, 2, escape);
    t.is(r.stdout, '', escape);
  }

  // lines of an exec run in turn, stopping at the first failure
  const two = await exec(client, 'show folder\nshow folder fs:nope\nshow auto-sync');
  t.is(two.code, 1);
  t.regex(two.stdout, /fs:tank/);
  t.notRegex(two.stdout, /No auto-sync services/);

  const lines = readFileSync(audit.file, 'utf8');
  t.regex(lines, /login user="alice" from=127\.0\.0\.1:\d+ conn=1 method="publickey" key="SHA256:/);
  t.regex(lines, /command user="alice" from=127\.0\.0\.1:\d+ conn=1 "show auto-sync"/);
  t.regex(lines, /command user="alice" from=127\.0\.0\.1:\d+ conn=1 "\$\(id\)"/);
});

test('a key that is not authorized is refused, and the refusal is audited', async (t) => {
  const { port, audit } = await console_(t);
  const stranger = keyPair();
  const error = await t.throwsAsync(connect(t, port, stranger.private, 'mallory'));
  t.regex(error!.message, /All configured authentication methods failed/);
  t.regex(readFileSync(audit.file, 'utf8'), /refused user="mallory" from=127\.0\.0\.1:\d+ conn=1 method="publickey" "the key SHA256:\S+ is not in the authorized keys"/);
});

test('port forwarding and sftp are refused', async (t) => {
  const { operator, port } = await console_(t);
  const client = await connect(t, port, operator.private);
  await t.throwsAsync(new Promise((resolve, reject) => client.forwardOut('127.0.0.1', 0, '127.0.0.1', 22, (e, s) => (e ? reject(e) : resolve(s)))));
  await t.throwsAsync(new Promise((resolve, reject) => client.sftp((e, s) => (e ? reject(e) : resolve(s)))));
  t.is((await exec(client, 'show auto-sync')).code, 0, 'the connection still works');
});

test('the shell on a pty: prompt, a command, resize, Ctrl-C, exit with status 0', async (t) => {
  const { operator, port, audit } = await console_(t);
  const client = await connect(t, port, operator.private, 'bob');
  const stream = await new Promise<ClientChannel>((resolve, reject) => client.shell({ term: 'xterm-256color', cols: 90, rows: 20 }, (e, s) => (e ? reject(e) : resolve(s))));
  let shown = '';
  let code = null as number | null;
  stream.on('data', (d: Buffer) => (shown += d));
  stream.on('exit', (c: number) => (code = c));
  const closed = new Promise((r) => stream.on('close', r));

  await waitFor(() => shown, /syncsh@node1:\/\$ /);
  stream.write('show auto-sync\r');
  await waitFor(() => shown, /No auto-sync services\. Create one with 'create auto-sync'\.\r\n/);
  stream.setWindow(30, 100, 0, 0);
  stream.write('\u0003');
  stream.write('exit\r');
  await closed;
  t.is(code, 0);
  t.notRegex(shown.replace(/\r\n/g, ''), /\n/, 'every newline reached the client as CRLF');
  client.end();
  await waitFor(() => readFileSync(audit.file, 'utf8'), /command user="bob" from=127\.0\.0\.1:\d+ conn=1 "show auto-sync"[\s\S]*"exit"[\s\S]*logout user="bob"/);
  t.pass();
});

test('an error in one session ends that session only', async (t) => {
  const { operator, port, logged } = await console_(t, {
    wrap: (app) => async (s) => {
      if (s.command === 'boom') throw new Error('the handler broke');
      return app(s);
    },
  });
  const client = await connect(t, port, operator.private);
  const other = await connect(t, port, operator.private);
  const [broken, fine] = await Promise.all([exec(client, 'boom'), exec(other, 'show auto-sync')]);
  t.is(broken.code, 70);
  t.regex(broken.stderr, /this session failed and is closed: the handler broke/);
  t.is(fine.code, 0);
  t.is((await exec(client, 'show auto-sync')).code, 0, 'the same connection opens another session');
  t.true(logged.some((l) => /the handler broke/.test(l)));
});

test('a session whose client goes away in the middle of a dialog, a logtail or the dashboard ends too', async (t) => {
  const ended: string[] = [];
  const { operator, port, services } = await console_(t, {
    wrap: (app) => async (s) => {
      try {
        return await app(s);
      } finally {
        ended.push(s.user);
      }
    },
  });
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/a');
  await services.autoSync.create({ fromFs: 'fs:tank/a', toFs: 'fs:tank/b' });
  const cases = [
    ['dialog', 'create auto-sync', /Source folder/],
    ['logtail', 'show auto-sync :tank-a-000 logtail -f', /q or Ctrl-C to stop/],
    ['dashboard', 'show auto-sync dashboard', /quit/],
  ] as const;
  for (const [user, command, shows] of cases) {
    const client = await connect(t, port, operator.private, user);
    const stream = await new Promise<ClientChannel>((resolve, reject) => client.shell({ term: 'xterm', cols: 100, rows: 30 }, (e, s) => (e ? reject(e) : resolve(s))));
    let shown = '';
    stream.on('data', (d: Buffer) => (shown += d));
    await waitFor(() => shown, /syncsh@node1:\/\$ /);
    stream.write(`${command}\r`);
    await waitFor(() => shown, shows);
    client.end();
    await waitFor(() => ended.join(' '), new RegExp(user));
  }
  t.deepEqual(ended, ['dialog', 'logtail', 'dashboard']);
});

test('colour follows the client: on for a terminal, off with NO_COLOR sent (SetEnv) or TERM=dumb', async (t) => {
  const { operator, port } = await console_(t);
  const client = await connect(t, port, operator.private);
  const promptOf = async (term: string, env: Record<string, string>) => {
    const stream = await new Promise<ClientChannel>((resolve, reject) => client.shell({ term, cols: 80, rows: 24 }, { env }, (e, s) => (e ? reject(e) : resolve(s))));
    let shown = '';
    stream.on('data', (d: Buffer) => (shown += d));
    await waitFor(() => shown, /syncsh@node1:\/\$/);
    stream.end('exit\r');
    return shown;
  };
  t.regex(await promptOf('xterm-256color', {}), /\u001b\[1msyncsh@node1:\/\$ /);
  t.notRegex(await promptOf('xterm-256color', { NO_COLOR: '1' }), /\u001b\[1m/);
  t.notRegex(await promptOf('dumb', {}), /\u001b\[1m/);
});

// cheap scrypt parameters: these tests are about the server, not the hash
const FAST = { N: 1024, r: 8, p: 1 };

/** the methods the server offers after the client's 'none' */
function offered(port: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let calls = 0;
    client.on('error', () => undefined);
    client.connect({
      host: '127.0.0.1',
      port,
      username: 'alice',
      authHandler: (methodsLeft, _partial, next) => {
        if (calls++ === 0) return next('none');
        resolve(methodsLeft ?? []);
        client.end();
        return next(false as never);
      },
    });
    setTimeout(() => reject(new Error('no answer to none')), 5000).unref();
  });
}

test('passwords: offered and taken only while on, only for users that have one; refusals wait and are audited', async (t) => {
  let on = false;
  const { port, audit, passwords } = await console_(t, { passwordAuth: () => on, passwordFailureDelayMs: 300 });
  await passwords.set('alice', 'alice-secret-1', FAST);
  const audited = () => readFileSync(audit.file, 'utf8');

  t.deepEqual(await offered(port), ['publickey'], 'off: passwords are not offered (nor keyboard-interactive)');
  // ssh2's client sends the password anyway
  const off = await t.throwsAsync(connectWith(t, port, { username: 'alice', password: 'alice-secret-1' }));
  t.regex(off!.message, /All configured authentication methods failed/);
  t.regex(audited(), /refused user="alice" from=127\.0\.0\.1:\d+ conn=2 method="password" "password refused: password logins are off"\n/);

  on = true; // read at every attempt: no restart
  t.deepEqual(await offered(port), ['publickey', 'password']);
  const client = await connectWith(t, port, { username: 'alice', password: 'alice-secret-1' });
  const ok = await exec(client, 'show auto-sync');
  t.is(ok.code, 0);
  t.regex(audited(), /login user="alice" from=127\.0\.0\.1:\d+ conn=4 method="password"\n/);
  t.regex(audited(), /command user="alice" from=127\.0\.0\.1:\d+ conn=4 "show auto-sync"/);

  const started = Date.now();
  await t.throwsAsync(connectWith(t, port, { username: 'alice', password: 'alice-secret-2' }));
  t.true(Date.now() - started >= 300, 'a wrong password is answered after the delay');
  t.regex(audited(), /refused user="alice" from=127\.0\.0\.1:\d+ conn=5 method="password" "password refused"\n/);

  await t.throwsAsync(connectWith(t, port, { username: 'bob', password: 'alice-secret-1' }));
  t.regex(audited(), /refused user="bob" from=127\.0\.0\.1:\d+ conn=6 method="password" "password refused: no console password is set for \\"bob\\""/);

  // a password set while the server runs counts at once; removed, it no longer does
  await passwords.set('bob', 'bob-secret-22', FAST);
  t.is((await exec(await connectWith(t, port, { username: 'bob', password: 'bob-secret-22' }), 'show auto-sync')).code, 0);
  await passwords.remove('bob');
  await t.throwsAsync(connectWith(t, port, { username: 'bob', password: 'bob-secret-22' }));

  on = false;
  await t.throwsAsync(connectWith(t, port, { username: 'alice', password: 'alice-secret-1' }));
  t.is((await exec(client, 'show auto-sync')).code, 0, 'a session opened with a password goes on when they are turned off');
  t.false(audited().includes('alice-secret'), 'no password in the audit log');
});

test('six wrong passwords on one connection drop it, as wrong keys do', async (t) => {
  const { port, audit, passwords } = await console_(t, { passwordAuth: () => true, passwordFailureDelayMs: 20 });
  await passwords.set('alice', 'alice-secret-1', FAST);
  let tries = 0;
  const error = await t.throwsAsync(
    connectWith(t, port, {
      username: 'alice',
      authHandler: (_left, _partial, next) => next(tries++ < 10 ? { type: 'password', username: 'alice', password: `guess-${tries}` } : (false as never)),
    }),
  );
  t.regex(error!.message, /closed the connection before a login/);
  t.is(readFileSync(audit.file, 'utf8').match(/"password refused"/g)?.length, 6);
  t.true(tries <= 7, `${tries} attempts were answered`);
});

test('with no password file given, passwords are neither offered nor taken', async (t) => {
  const { port, passwords } = await console_(t);
  await passwords.set('alice', 'alice-secret-1', FAST);
  t.deepEqual(await offered(port), ['publickey']);
  await t.throwsAsync(connectWith(t, port, { username: 'alice', password: 'alice-secret-1' }));
});
