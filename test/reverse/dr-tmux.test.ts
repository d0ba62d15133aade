/**
 * The disaster-recovery dialog typed into the real shell (tmux), as the
 * NexentaStor document shows it: the IMPORTANT warning, "Proceed reversing
 * 'auto-sync:NAME'?", Yes, "Reversed direction for 1 auto-sync instance".
 */
import test from 'ava';
import { BIN } from '../helpers/cli.js';
import { openScreen, tmuxAvailable } from '../helpers/tmux.js';
import { requireSystem } from '../helpers/system.js';
import { FAST_ENV } from '../peer/_fixture.js';
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
  await screen.waitFor(/^yes {2}\[no\]$/m);
  await screen.keys('h', 'Enter');
  const shown = await screen.waitFor(/Reversed direction for 1 auto-sync instance/, 30_000);
  t.regex(shown, /Proceed reversing 'auto-sync:tank-docs-000'\? Yes/);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2 });

  await screen.type(`show auto-sync :${p.name} logtail`);
  await screen.keys('Enter');
  await screen.waitFor(/\[Reverse-direction: remote appliance: down \][\s\S]*\[Reverse-direction: DR scenario\. We are non-master and remote is down \][\s\S]*\[Rereading configuration\. \]/);
});
