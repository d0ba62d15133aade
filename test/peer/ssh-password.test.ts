/**
 * Binding with the peer's password, once: a throwaway user with a password
 * on a test sshd that allows password logins. From a script the password
 * comes from --password-file; at the shell it is asked in a dialog that
 * shows nothing of it. Either way it is kept nowhere, and afterwards the key
 * alone works.
 */
import test from 'ava';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findCommand, gatedTest } from '../helpers/system.js';
import { makeNetLink, netnsMissing, type NetLink } from '../helpers/netns.js';
import { sshdMissing, startSshd, type Sshd } from '../helpers/sshd.js';
import { diffTrees, readTree, tempDir } from '../helpers/fs-tree.js';
import { openScreen, tmuxAvailable } from '../helpers/tmux.js';
import { BIN } from '../helpers/cli.js';
import { Fixture, folderWith, makeAppliance, type Appliance } from './_fixture.js';

const passwordTest = await gatedTest(
  ['sshd', 'network namespaces', 'useradd', 'tmux'],
  async () => (await sshdMissing()) ?? (await netnsMissing()) ?? (await tmuxAvailable()) ?? ((await findCommand('useradd')) && (await findCommand('chpasswd')) ? null : 'useradd/chpasswd are not installed'),
);

const fixture = new Fixture();
test.after.always(() => fixture.close());

let user: string;
let password: string;
let uid: number;
let link: NetLink;
let sshd: Sshd;
let b: Appliance;

function allFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

function passwordNowhere(t: import('ava').ExecutionContext, ...homes: string[]) {
  for (const file of homes.flatMap(allFiles)) t.false(readFileSync(file).includes(password), `${file} holds the password`);
}

// a throwaway user with a password, and beta behind an sshd that takes passwords, shared by the tests below
if (!passwordTest.missing) {
  test.before(async () => {
    user = `sst${randomBytes(3).toString('hex')}`;
    password = `pw-${randomBytes(9).toString('base64url')}`;
    await execa('useradd', ['-M', '-d', '/nonexistent', '-s', '/bin/sh', user]);
    // registered first, so it runs last: after the appliances closed their connections (and so the user's sessions)
    fixture.teardown(() => execa('userdel', ['-f', user], { reject: false }));
    await execa('chpasswd', { input: `${user}:${password}\n` });
    uid = Number((await execa('id', ['-u', user])).stdout);
    const gid = Number((await execa('id', ['-g', user])).stdout);
    link = await makeNetLink(fixture);
    sshd = await startSshd(fixture, { netns: link, address: link.nsAddr, port: 2222, passwords: true, owner: { uid, gid } });
    b = makeAppliance(fixture, 'beta');
    await b.services.peers.store.setAuthorizedKeysFile(sshd.authorizedKeys);
    await folderWith(b, 'tank', {});
    // beta's agent runs as that user: its home is that user's
    await execa('chown', ['-R', `${uid}:${gid}`, b.home]);
    chmodSync(b.home, 0o755);
  });
}

passwordTest.serial('ssh-bind --password-file: a wrong password changes nothing; the right one installs the key; the key alone works afterwards', async (t) => {
  const a = makeAppliance(fixture, 'alpha');
  const secrets = tempDir(t, 'syncsh-secret-');
  const passwordFile = path.join(secrets, 'password');
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  const wrongFile = path.join(secrets, 'wrong');
  writeFileSync(wrongFile, 'not-it\n');
  const bindLine = `setup network ssh-bind ${link.nsAddr} --port 2222 --user ${user} --remote-home ${b.home} -y`;

  const wrong = await a.cli(`${bindLine} --password-file ${wrongFile}`);
  t.is(wrong.exitCode, 1);
  t.regex(String(wrong.stderr), new RegExp(`did not accept the password for user ${user}`));
  t.is(readFileSync(sshd.authorizedKeys, 'utf8'), '');

  const r = await a.cli(`${bindLine} --password-file ${passwordFile}`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /logged in once with the password/);
  t.true(String(r.stdout).includes(await sshd.fingerprint()));

  const line = readFileSync(sshd.authorizedKeys, 'utf8').trim();
  t.regex(line, new RegExp(`^command=".* agent --home ${b.home} --peer alpha",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding ssh-ed25519 \\S+ syncsh:alpha$`));
  t.is(statSync(sshd.authorizedKeys).uid, uid, "the file stays the user's");
  t.like(a.services.peers.store.outboundPeer('beta'), { user, address: link.nsAddr, fingerprint: await sshd.fingerprint() });
  t.like(b.services.peers.store.inboundPeer('alpha'), { id: 'alpha', address: link.hostAddr });
  passwordNowhere(t, a.home, b.home);

  // the key alone: a run as that user, over the restricted key
  const src = await folderWith(a, 'tank/docs', { 'a.txt': 'over a password-less key\n' });
  await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/docs', recursive: false });
  await a.services.autoSync.run('tank-docs-000');
  t.deepEqual(diffTrees(await readTree(src), await readTree(b.live('tank/docs'))), []);
  t.is(statSync(b.live('tank/docs')).uid, uid, 'received by the agent running as that user');
});

passwordTest.serial('at the shell: the fingerprint is shown and trust asked, the password asked in a dialog that shows nothing of it', async (t) => {
  const g = makeAppliance(fixture, 'gamma');
  const screen = await openScreen(t, ['node', BIN], { env: { SYNCSH_HOME: g.home, SYNCSH_APPLIANCE_ID: 'gamma' }, columns: 160, rows: 40 });
  await screen.waitFor(/syncsh@gamma:\/\$\s*$/m);
  await screen.type(`setup network ssh-bind ${link.nsAddr} --port 2222 --user ${user} --remote-home ${b.home}`);
  await screen.keys('Enter');
  const fp = await sshd.fingerprint();
  await screen.waitFor(new RegExp(`presents the host key ssh-ed25519 ${fp.replace(/[+/]/g, '\\$&')}[\\s\\S]*Trust this host key and bind`), 20_000);
  await screen.keys('h', 'Enter'); // No -> Yes
  await screen.waitFor(new RegExp(`Password for ${user}@${link.nsAddr.replace(/\./g, '\\.')}:`), 20_000);
  await screen.type(password);
  t.false((await screen.capture()).includes(password), 'nothing of the password is on the screen while typing');
  await screen.keys('Enter');
  const shown = await screen.waitFor(/Bound to the appliance beta .*logged in once with the password/s, 30_000);
  t.false(shown.includes(password));
  t.like(b.services.peers.store.inboundPeer('gamma'), { id: 'gamma' });
  t.true(readFileSync(sshd.authorizedKeys, 'utf8').includes('syncsh:gamma'));
  passwordNowhere(t, g.home, b.home);
  await screen.type('exit');
  await screen.keys('Enter');
});
