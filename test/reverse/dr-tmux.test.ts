/**
 * The reverse-direction dialogs typed into the real shell (tmux), as the
 * NexentaStor document shows them: the disaster-recovery warning, "Proceed
 * reversing 'auto-sync:NAME'?", Yes, "Reversed direction for 1 auto-sync
 * instance"; "Reverse-direction feature is currently disabled" and its
 * question; the hand-over's confirmation.
 */
import test from 'ava';
import { BIN } from '../helpers/cli.js';
import { openScreen, tmuxAvailable } from '../helpers/tmux.js';
import { requireSystem } from '../helpers/system.js';
import { FAST_ENV, folderWith } from '../peer/_fixture.js';
import { reversePair } from './_pair.js';

test('the DR dialog on the non-master, with the master down', async (t) => {
  if (!(await requireSystem(t, ['tmux'], tmuxAvailable))) return;
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  p.down(p.a);
  const screen = await openScreen(t, ['node', BIN], { env: { ...FAST_ENV, SYNCSH_HOME: p.b.home, SYNCSH_APPLIANCE_ID: 'beta', NO_COLOR: '1' }, columns: 120, rows: 40 });
  await screen.waitFor(/syncsh@beta:\/\$\s*$/m);
  await screen.type(`setup auto-sync :${p.name} reverse-direction`);
  await screen.keys('Enter');
  await screen.waitFor(/IMPORTANT! You are about to reverse direction of 'auto-sync:tank-docs-000' from non-master appliance\.[\s\S]*WILL BE KEPT[\s\S]*Proceed reversing 'auto-sync:tank-docs-000'\?/, 30_000);
  const asking = await screen.waitFor(/^yes {2}\[no\]$/m);
  t.is(asking.match(/IMPORTANT!/g)?.length, 1, "the warning once, not again as the question's help");
  await screen.keys('h', 'Enter');
  const shown = await screen.waitFor(/Reversed direction for 1 auto-sync instance/, 30_000);
  t.regex(shown, /Proceed reversing 'auto-sync:tank-docs-000'\? Yes/);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2 });

  await screen.type(`show auto-sync :${p.name} logtail`);
  await screen.keys('Enter');
  await screen.waitFor(/\[Reverse-direction: remote appliance: down \][\s\S]*\[Reverse-direction: DR scenario\. We are non-master and remote is down \][\s\S]*\[Rereading configuration\. \]/);
});

test('enabling reverse-direction, then the hand-over, answered in the shell; no changes nothing', async (t) => {
  if (!(await requireSystem(t, ['tmux'], tmuxAvailable))) return;
  const p = await reversePair(t);
  await folderWith(p.a, 'tank/more', { 'm.txt': 'more\n' });
  const c = await p.a.cli('create auto-sync --from-fs fs:tank/more --to-host beta --to-fs fs:tank/more --recursive no -y');
  t.is(c.exitCode, 0, String(c.stderr));
  const screen = await openScreen(t, ['node', BIN], { env: { ...FAST_ENV, SYNCSH_HOME: p.a.home, SYNCSH_APPLIANCE_ID: 'alpha', NO_COLOR: '1' }, columns: 120, rows: 40 });
  await screen.waitFor(/syncsh@alpha:\/\$\s*$/m);
  await screen.type('setup auto-sync :tank-more-000 reverse-direction');
  await screen.keys('Enter');
  await screen.waitFor(/Reverse-direction feature is currently disabled\n[\s\S]*Do you want enable 'reverse-direction' feature\?/, 30_000);
  await screen.waitFor(/^yes {2}\[no\]$/m);
  await screen.keys('h', 'Enter');
  await screen.waitFor(/Reverse-direction feature is now enabled for auto-sync:tank-more-000/, 30_000);
  t.like(p.fresh(p.b).autoSync.config('tank-more-000'), { role: 'non-master', reverseCapable: true });

  await screen.keys('C-l');
  await screen.type('run auto-sync :tank-more-000');
  await screen.keys('Enter');
  await screen.waitFor(/full sync OK/, 30_000);
  await screen.keys('C-l');
  await screen.type('setup auto-sync :tank-more-000 reverse-direction');
  await screen.keys('Enter');
  await screen.waitFor(/Reverse direction of 'auto-sync:tank-more-000' to beta:fs:tank\/more => alpha:fs:tank\/more, master beta\?[\s\S]*is unmounted while the last delta is synced/, 30_000);
  await screen.waitFor(/^yes {2}\[no\]$/m);
  await screen.keys('Enter');
  await screen.waitFor(/Nothing was changed\.\n.*syncsh@alpha:\/\$\s*$/m, 30_000);
  t.like(p.fresh(p.a).autoSync.config('tank-more-000'), { role: 'master', epoch: 1 });
  t.true((await (await p.fresh(p.a).storage.usable('fs')).getDataset('tank/more'))!.mounted);

  await screen.keys('C-l');
  await screen.type('setup auto-sync :tank-more-000 reverse-direction');
  await screen.keys('Enter');
  await screen.waitFor(/^yes {2}\[no\]$/m, 30_000);
  await screen.keys('h', 'Enter');
  await screen.waitFor(/Reversed direction for 1 auto-sync instance: beta:fs:tank\/more => alpha:fs:tank\/more, master beta \(epoch 2\)/, 30_000);
  t.like(p.fresh(p.b).autoSync.config('tank-more-000'), { role: 'master', epoch: 2 });
  t.like(p.fresh(p.a).autoSync.config('tank-more-000'), { role: 'non-master', epoch: 2 });
});
