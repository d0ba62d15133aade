import test from 'ava';
import { DialogCancelled, NoTerminalError } from '../../src/commands/dialogs.js';
import { createDialogs } from '../../src/shell/dialogs.js';
import { answerLine, choiceLines, questionLine, selectLines } from '../../src/shell/dialogs/layout.js';
import { fakeTerminal, KEY } from './fake-terminal.js';

const REVERSE_HELP = "Decide if you going to use reverse-direction command in future. If not sure, please select 'no'. You will be able to turn on this option later by executing 'reverse-direction'.";
const REVERSE_CHOICES = [
  { value: 'yes', description: 'Keep a copy of this service on the other appliance' },
  { value: 'no', description: 'Use regular auto-sync service' },
];
const INVERSE = '\u001b[7m';

/** a terminal with a line already on it, to see that dialogs leave it alone */
function withHistory(opts: Parameters<typeof fakeTerminal>[0] = {}) {
  const f = fakeTerminal(opts);
  f.term.output.write('syncsh@node1:/$ create auto-sync\r\n');
  return { f, dialogs: createDialogs(f.term) };
}

test('select looks like NMC: question, choices on a line, rule, help, description', async (t) => {
  const { f, dialogs } = withHistory();
  const answer = dialogs.select('Reverse capability', REVERSE_CHOICES, { default: 'no', help: REVERSE_HELP });
  await f.waitFor(/Use regular/);
  t.is(
    f.screen.text(),
    [
      'syncsh@node1:/$ create auto-sync',
      'Reverse capability      :',
      'yes  [no]',
      '-----',
      'Decide if you going to use reverse-direction command in future. If not sure,',
      "please select 'no'. You will be able to turn on this option later by executing",
      "'reverse-direction'. Navigate with arrow keys (or hjkl), or Ctrl-C to exit.",
      'Use regular auto-sync service',
    ].join('\n'),
  );
  t.false(f.screen.cursorVisible);
  f.type(KEY.enter);
  t.is(await answer, 'no');
  t.is(f.screen.text(), 'syncsh@node1:/$ create auto-sync\nReverse capability      : no', 'the dialog collapses to its answer');
  t.deepEqual(f.screen.cursor(), { x: 0, y: 2 });
  t.true(f.screen.cursorVisible);
  t.false(f.term.output.writableEnded, 'the terminal stays open for the next dialog');
});

test('arrows and hjkl move the highlight, stopping at the ends', async (t) => {
  const labels = ['minute', 'hour', 'day', 'week', 'month'];
  const moves: [string, string][] = [
    [KEY.right, 'hour'],
    ['l', 'day'],
    [KEY.down, 'week'],
    ['j', 'month'],
    ['l', 'month'],
    [KEY.left, 'week'],
    ['h', 'day'],
    [KEY.up, 'hour'],
    ['k', 'minute'],
    ['h', 'minute'],
  ];
  const { f, dialogs } = withHistory();
  const answer = dialogs.select(
    'Schedule type',
    labels.map((value) => ({ value })),
    { default: 'minute' },
  );
  for (const [key, highlighted] of moves) {
    f.type(key);
    await f.waitFor((s) => s.includes(`[${highlighted}]`));
  }
  f.type(KEY.right, KEY.right, KEY.enter);
  t.is(await answer, 'day');
  t.regex(f.screen.text(), /Schedule type {11}: day$/);
});

test('the description follows the highlighted choice', async (t) => {
  const { f, dialogs } = withHistory();
  const answer = dialogs.select('Reverse capability', REVERSE_CHOICES, { default: 'no' });
  await f.waitFor(/Use regular auto-sync service$/);
  f.type('h');
  await f.waitFor(/Keep a copy of this service on the other appliance$/);
  f.type(KEY.enter);
  t.is(await answer, 'yes');
});

test('Ctrl-C leaves a select: DialogCancelled, and the screen as it was', async (t) => {
  const { f, dialogs } = withHistory();
  const answer = dialogs.select('Reverse capability', REVERSE_CHOICES, { help: REVERSE_HELP });
  await f.waitFor(/Navigate/);
  f.type(KEY.ctrlC);
  await t.throwsAsync(answer, { instanceOf: DialogCancelled });
  t.is(f.screen.text(), 'syncsh@node1:/$ create auto-sync');
  t.deepEqual(f.screen.cursor(), { x: 0, y: 1 });
  t.true(f.screen.cursorVisible);
});

test('confirm is yes/no, on no unless the default is yes, and collapses to Question? Yes', async (t) => {
  const { f, dialogs } = withHistory();
  const no = dialogs.confirm('Destroy auto-sync:tank-data-000?');
  await f.waitFor(/^yes {2}\[no\]$/m);
  f.type(KEY.enter);
  t.false(await no);
  const yes = dialogs.confirm("Do you want enable 'reverse-direction' feature?", { default: true, help: 'You can turn it off later.' });
  await f.waitFor(/^\[yes\] {2}no$/m);
  t.regex(f.screen.text(), /You can turn it off later\. Navigate with arrow keys \(or hjkl\), or Ctrl-C to\sexit\.$/, 'wrapped at the width');
  f.type(KEY.enter);
  t.true(await yes);
  t.is(f.screen.text(), ['syncsh@node1:/$ create auto-sync', 'Destroy auto-sync:tank-data-000? No', "Do you want enable 'reverse-direction' feature? Yes"].join('\n'));
  const cancelled = dialogs.confirm('Really?');
  await f.waitFor(/Really\?\n/);
  f.type(KEY.ctrlC);
  await t.throwsAsync(cancelled, { instanceOf: DialogCancelled });
});

test('with colour the highlight is inverse video; with NO_COLOR it is [bracketed] and no escapes colour anything', async (t) => {
  const sgr = /\u001b\[[0-9;]*m/;
  const coloured = withHistory({ color: true });
  const a = coloured.dialogs.select('Reverse capability', REVERSE_CHOICES, { default: 'no' });
  await coloured.f.waitFor(/Use regular/);
  t.true(coloured.f.written().includes(`${INVERSE}no`));
  t.false(coloured.f.screen.text().includes('[no]'));
  coloured.f.type(KEY.enter);
  await a;
  const plain = withHistory({ color: false });
  const b = plain.dialogs.select('Reverse capability', REVERSE_CHOICES, { default: 'no' });
  await plain.f.waitFor(/Use regular/);
  t.regex(plain.f.screen.text(), /^yes {2}\[no\]$/m);
  plain.f.type(KEY.enter);
  await b;
  t.false(sgr.test(plain.f.written()));
});

test('input shows the default ready to accept, and Enter takes it', async (t) => {
  const { f, dialogs } = withHistory();
  const answer = dialogs.input('Destination folder', { default: 'fs:tank/copy', help: 'The folder the copy goes to.' });
  await f.waitFor(/fs:tank\/copy/);
  t.is(f.screen.text(), ['syncsh@node1:/$ create auto-sync', 'Destination folder      : fs:tank/copy', '-----', 'The folder the copy goes to. Press Enter to accept, or Ctrl-C to exit.'].join('\n'));
  t.deepEqual(f.screen.cursor(), { x: 'Destination folder      : fs:tank/copy'.length, y: 1 });
  f.type(KEY.enter);
  t.is(await answer, 'fs:tank/copy');
  t.is(f.screen.text(), 'syncsh@node1:/$ create auto-sync\nDestination folder      : fs:tank/copy');
});

test('input validates on Enter: the error shows under the field, which stays to be fixed', async (t) => {
  const { f, dialogs } = withHistory();
  const validate = (v: string) => (/^\d+$/.test(v) && Number(v) > 0 ? null : `Period must be a whole number above 0, not '${v}'.`);
  const answer = dialogs.input('Period (every N minutes)', { default: '5', validate });
  await f.waitFor(/: 5$/m);
  f.type(KEY.backspace, 'x', KEY.enter);
  await f.waitFor(/not 'x'/);
  t.is(f.screen.text().split('\n').slice(1, 4).join('\n'), ['Period (every N minutes) : x', "Period must be a whole number above 0, not 'x'.", '-----'].join('\n'));
  t.deepEqual(f.screen.cursor(), { x: 'Period (every N minutes) : x'.length, y: 1 }, 'still typing in the field');
  f.type(KEY.backspace, '10');
  await f.waitFor((s) => !s.includes('not ') && s.includes(': 10'));
  f.type(KEY.enter);
  t.is(await answer, '10');
  t.regex(f.screen.text(), /\nPeriod \(every N minutes\) : 10$/);
});

test('Ctrl-C leaves an input with DialogCancelled and a clean screen', async (t) => {
  const { f, dialogs } = withHistory();
  const answer = dialogs.input('Destination appliance', { default: 'localhost' });
  await f.waitFor(/localhost/);
  f.type(KEY.ctrlC);
  await t.throwsAsync(answer, { instanceOf: DialogCancelled });
  t.is(f.screen.text(), 'syncsh@node1:/$ create auto-sync');
});

test('password is never echoed, not even as its length', async (t) => {
  const { f, dialogs } = withHistory();
  const answer = dialogs.password('Password', { help: 'The password of root on the destination appliance.' });
  await f.waitFor(/Press Enter/);
  const before = f.written().length;
  f.type('hunter2');
  await new Promise((r) => setTimeout(r, 50));
  t.false(/hunter2|\*{3}/.test(f.screen.text()));
  f.type(KEY.enter);
  t.is(await answer, 'hunter2');
  t.false(f.written().includes('hunter2'));
  t.false(f.written().slice(before).includes('*'));
  t.is(f.screen.text(), 'syncsh@node1:/$ create auto-sync\nPassword                :');
});

test('with no person at the terminal every dialog raises NoTerminalError and writes nothing', async (t) => {
  const f = fakeTerminal({ interactive: false });
  const dialogs = createDialogs(f.term);
  const question = "Destroy auto-sync service 'auto-sync:tank-data-000'?";
  for (const ask of [() => dialogs.confirm(question), () => dialogs.select(question, REVERSE_CHOICES), () => dialogs.input(question), () => dialogs.password(question)]) {
    const error = await t.throwsAsync(ask(), { instanceOf: NoTerminalError });
    t.true(error!.message.includes(question));
  }
  t.is(f.written(), '');
});

test('dialogs one after another, each collapsing to its line', async (t) => {
  const { f, dialogs } = withHistory();
  const source = dialogs.select('Source folder', [{ value: 'fs:tank/data' }, { value: 'fs:vol/folder' }]);
  await f.waitFor(/\[fs:tank\/data\]/);
  f.type('l', KEY.enter);
  t.is(await source, 'fs:vol/folder');
  const destination = dialogs.input('Destination folder', { default: 'fs:tank/copy' });
  await f.waitFor(/copy$/m);
  f.type(KEY.enter);
  await destination;
  t.is(f.screen.text(), ['syncsh@node1:/$ create auto-sync', 'Source folder           : fs:vol/folder', 'Destination folder      : fs:tank/copy'].join('\n'));
});

test('layout: labels are padded like NMC fields; questions stay as asked', (t) => {
  t.is(questionLine('Reverse capability'), 'Reverse capability      :');
  t.is(questionLine('Snapshots to keep on the source'), 'Snapshots to keep on the source :');
  t.is(questionLine('Destroy it?'), 'Destroy it?');
  t.is(answerLine('Destroy it?', 'Yes', false), 'Destroy it? Yes');
  t.is(answerLine('Password', '', false), 'Password                :');
});

test('layout: many choices flow onto more lines, and a window keeps the current one on screen', (t) => {
  const labels = Array.from({ length: 40 }, (_, i) => `fs:tank/folder-${i}`);
  const all = choiceLines(labels, 0, 80, 100, false);
  t.true(all.length > 1);
  t.true(all.every((l) => l.length <= 80));
  const windowed = choiceLines(labels, 39, 80, 3, false);
  t.is(windowed.length, 3);
  t.true(windowed[0].startsWith('… '));
  t.true(windowed.at(-1)!.includes('[fs:tank/folder-39]'));
  const screen = selectLines({ question: 'Source folder', labels, current: 20, width: 80, height: 24, color: false, help: REVERSE_HELP });
  t.true(screen.length <= 24, 'the whole dialog fits an 80x24 terminal');
  t.true(screen.some((l) => l.includes('[fs:tank/folder-20]')));
});
