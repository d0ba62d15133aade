/**
 * The real shell in a real terminal (tmux, 80x24), typed into as a person
 * would: the create auto-sync dialog, a run, the table, TAB, ?, Ctrl-C,
 * logtail -f, exit.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { BIN, syncsh } from '../helpers/cli.js';
import { openScreen, tmuxAvailable } from '../helpers/tmux.js';
import { requireSystem } from '../helpers/system.js';
import { writeFile } from 'node:fs/promises';

test('create auto-sync through the dialog, run it, and read the table', async (t) => {
  if (!(await requireSystem(t, ['tmux'], tmuxAvailable))) return;
  const { env: base, home } = makeAppliance(t, 'node1');
  // fs only: zfs pools that other tests create at the same time must not appear in the folder list.
  const env = { ...base, SYNCSH_DRIVERS: 'fs' };
  for (const cmd of ['create folder fs:tank', 'create folder fs:tank/data']) t.is((await syncsh(['-c', cmd], env)).exitCode, 0);
  await writeFile(path.join(home, 'fs', 'tank', 'data', 'hello.txt'), 'hello from node1\n');

  const screen = await openScreen(t, ['node', BIN], { env: { SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: 'node1', SYNCSH_DRIVERS: 'fs', NO_COLOR: '1' }, columns: 80, rows: 24 });
  await screen.waitFor(/syncsh@node1:\/\$\s*$/m);
  await screen.type('create auto-sync');
  await screen.keys('Enter');
  await screen.waitFor(/Source folder +:\n\[?fs:tank\]? +\[?fs:tank\/data\]?.*\n-----\n[\s\S]*Navigate with arrow keys \(or hjkl\), or Ctrl-C to exit\./);
  await screen.keys('l', 'Enter');
  await screen.waitFor(/Source folder +: fs:tank\/data\nDestination appliance/);
  await screen.keys('Enter');
  await screen.waitFor(/Destination folder/);
  await screen.keys('C-u');
  await screen.type('fs:tank/../etc');
  await screen.keys('Enter');
  await screen.waitFor(/must not contain "\.\."/);
  await screen.keys('C-u');
  await screen.type('fs:tank/copy');
  await screen.keys('Enter');
  await screen.waitFor(/Schedule type +:\n/);
  await screen.keys('h', 'Enter'); // hour -> minute
  await screen.waitFor(/Schedule type +: minute/);
  await screen.keys('C-u');
  await screen.type('10');
  await screen.keys('Enter');
  await screen.waitFor(/Snapshots to keep on the source : 3\n/);
  await screen.keys('Enter');
  await screen.waitFor(/Snapshots to keep on the destination : 3\n/);
  await screen.keys('Enter');
  await screen.waitFor(/Reverse capability +:\n[\s\S]*If not sure, please select 'no'\.[\s\S]*Use regular auto-sync service/);
  await screen.keys('Enter');
  await screen.waitFor(/schedule +: every 10 minutes[\s\S]*Create auto-sync:tank-data-000\?/);
  await screen.keys('Enter');
  await screen.waitFor(/Created auto-sync:tank-data-000: fs:tank\/data => fs:tank\/copy, every 10 minutes/);

  await screen.type('run auto-sync :ta');
  await screen.keys('Tab');
  await screen.waitFor(/run auto-sync :tank-data-000\s*$/m);
  await screen.keys('Enter');
  await screen.waitFor(/auto-sync:tank-data-000: full sync OK/);
  t.is(await readFile(path.join(home, 'fs', 'tank', 'copy', 'hello.txt'), 'utf8'), 'hello from node1\n');

  await screen.keys('C-l');
  await screen.type('show auto-sync');
  await screen.keys('Enter');
  const table = await screen.waitFor(/tank-data-000 +fs:tank\/data +fs:tank\/copy .*online .*up/);
  t.true(table.split('\n').every((line) => line.length <= 80));

  await screen.type('setup auto-sync :tank-data-000 ');
  await screen.type('?');
  await screen.waitFor(/ property +the properties of a service[\s\S]* enable +run on schedule again/);
  await screen.keys('C-c');
  await screen.waitFor(/\^C\n.*syncsh@node1:\/\$\s*$/m);

  await screen.type('show auto-sync :tank-data-000 logtail -f -n 2');
  await screen.keys('Enter');
  await screen.waitFor(/\[SUCCESS: localhost\/tank\/data => localhost\/tank\/copy OK/);
  t.is((await syncsh(['-c', 'setup auto-sync :tank-data-000 property comment followed'], env)).exitCode, 0);
  await screen.waitFor(/\[Property comment set to "followed" \]/);
  await screen.keys('q');
  await screen.type('shwo');
  await screen.keys('Enter');
  await screen.waitFor(/Error: Unknown command 'shwo'[\s\S]*Did you mean 'show'\?/);
  await screen.waitFor(/Did you mean 'show'\?\n.*syncsh@node1:\/\$\s*$/m);
  await screen.type('exit');
  await screen.waitFor(/syncsh@node1:\/\$ exit\s*$/m);
  await screen.keys('Enter');
  t.is(await screen.waitForExit(30_000), 0);
});
