/**
 * Issue 10, item 6: the disaster-recovery warning names the copy that will
 * keep the unreplicated changes, the other appliance's, and the dataset the
 * orphan goes to there exactly as 'show auto-sync :NAME orphans' then lists
 * it: for a local-to-remote service (DR on the non-master) and a
 * remote-to-local one (DR on the master, which pulls). Beta's copy has
 * another name than alpha's, so naming the wrong one shows.
 */
import test from 'ava';
import { orphansOf, reversePair, write } from './_pair.js';

for (const pull of [false, true]) {
  test.serial(`the DR warning names alpha's copy and where its orphan goes (${pull ? 'remote-to-local' : 'local-to-remote'})`, async (t) => {
    const p = await reversePair(t, undefined, { pull, to: 'tank/copy' });
    const run = await (pull ? p.b : p.a).cli(`run auto-sync :${p.name}`);
    t.is(run.exitCode, 0, String(run.stderr));
    write(p.a.live('tank/docs'), 'late.txt', 'alpha wrote this after the last sync\n');
    p.down(p.a);
    const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
    t.is(r.exitCode, 0, String(r.stderr));
    const out = String(r.stdout) + String(r.stderr);
    const named = /as an orphan snapshot of (\S+) \(kept in (\S+)\)/.exec(out);
    t.truthy(named, out);
    t.is(named![1], 'alpha:fs:tank/docs');
    t.notRegex(out, /tank\/copy on alpha|alpha:fs:tank\/copy/);
    t.is(out.match(/IMPORTANT!/g)?.length, 1, 'the warning once');

    p.up(p.a);
    t.is(await p.fresh(p.a).autoSync.contact(p.name), 'demoted');
    const orphans = await orphansOf(p, p.a);
    t.is(orphans.length, 1);
    const shown = String((await p.a.cli(`show auto-sync :${p.name} orphans`)).stdout);
    const listed = /(fs:tank\/orphan-\S+)/.exec(shown)![1];
    t.is(named![2].replace('DATE', listed.slice(listed.lastIndexOf('-') + 1)), listed);
    t.is(`fs:${orphans[0].dataset}`, listed);
  });
}
