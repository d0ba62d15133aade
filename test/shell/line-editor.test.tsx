import test from 'ava';
import React from 'react';
import { History } from '../../src/shell/history.js';
import type { Completion, HelpEntry, LineEditorOptions } from '../../src/shell/line-editor.js';
import { fakeTerminal, KEY, type FakeTerminal } from './fake-terminal.js';

// The line editor loads ink as a prompt needs it (see line-editor/ink.ts), so it must come
// before ink-testing-library, which would load ink as is: on a CI machine, drawing only the last frame.
const { readLine, LineEditor } = await import('../../src/shell/line-editor.js');
const { render: renderInk } = await import('ink-testing-library');

// the tests are serial: one ink instance at a time, as in the shell

const PROMPT = 'syncsh@node1:/$ ';
const WORDS = ['show', 'share', 'setup', 'create', 'destroy'];

function complete(line: string, cursor: number): Completion {
  const start = line.slice(0, cursor).lastIndexOf(' ') + 1;
  const partial = line.slice(start, cursor);
  const choices = WORDS.filter((w) => w.startsWith(partial)).sort();
  if (choices.length === 1) return { replacement: `${choices[0]} `, start, choices };
  return { replacement: null, start, choices };
}

const HELP: HelpEntry[] = [
  { word: 'show', description: 'Show auto-sync services, folders and snapshots' },
  { word: 'create', description: 'Create an auto-sync service or a folder' },
];

function options(extra: Partial<LineEditorOptions> = {}): LineEditorOptions {
  return { prompt: PROMPT, history: new History(null), complete, help: () => HELP, ...extra };
}

/** readLine on a fresh 80x24 fake terminal, once the prompt is up */
async function prompted(extra: Partial<LineEditorOptions> = {}, term: FakeTerminal = fakeTerminal()) {
  const line = readLine(term.term, options(extra));
  await term.waitForCursor(PROMPT.length, 0);
  return { f: term, line };
}

test.serial('typed text is returned on Enter, and stays on screen with the cursor under it', async (t) => {
  const { f, line } = await prompted();
  f.type('show auto-sync');
  await f.waitFor(/auto-sync$/);
  f.type(KEY.enter);
  t.is(await line, 'show auto-sync');
  t.is(f.screen.text(), `${PROMPT}show auto-sync`);
  t.deepEqual(f.screen.cursor(), { x: 0, y: 1 }, "the command's output goes under the line");
  t.false(f.raw.mode, 'raw mode is off again');
  t.true(f.screen.cursorVisible);
  t.false(f.term.output.writableEnded);
});

test.serial('arrows, Home/End and deletion edit where the cursor is', async (t) => {
  const { f, line } = await prompted();
  f.type('shw');
  await f.waitForCursor(PROMPT.length + 3, 0);
  f.type(KEY.left);
  await f.waitForCursor(PROMPT.length + 2, 0);
  f.type('o', KEY.end, ' foldr', KEY.left, 'e', KEY.home, KEY.delete, 'S', KEY.ctrlE, KEY.backspace, 'r');
  await f.waitFor(/Show folder$/);
  await f.waitForCursor(PROMPT.length + 'Show folder'.length, 0);
  f.type(KEY.ctrlA, KEY.ctrlK, 'show', KEY.ctrlW, 'help', KEY.enter);
  t.is(await line, 'help');
});

test.serial('TAB completes; a second TAB lists the choices under the line and the prompt comes back', async (t) => {
  const { f, line } = await prompted();
  f.type('sh', KEY.tab, KEY.tab);
  await f.waitFor(/share {2}show\n/);
  t.is(f.screen.text(), [`${PROMPT}sh`, 'share  show', `${PROMPT}sh`].join('\n'));
  await f.waitForCursor(PROMPT.length + 2, 2);
  f.type('o', KEY.tab);
  await f.waitFor((s) => s.endsWith(`${PROMPT}show`));
  await f.waitForCursor(PROMPT.length + 5, 2);
  f.type(KEY.enter);
  t.is(await line, 'show ');
});

test("'?' prints what may come next under the line and keeps the line; '?' is not inserted", async (t) => {
  const { f, line } = await prompted();
  f.type('sh', KEY.left, '?');
  await f.waitFor(/Create an auto-sync/);
  t.is(f.screen.text(), [`${PROMPT}sh`, '  show     Show auto-sync services, folders and snapshots', '  create   Create an auto-sync service or a folder', `${PROMPT}sh`].join('\n'));
  await f.waitForCursor(PROMPT.length + 1, 3);
  f.type(KEY.enter);
  t.is(await line, 'sh');
});

test.serial('Ctrl-C cancels the line: it stays with ^C and the answer is empty', async (t) => {
  const { f, line } = await prompted();
  f.type('destroy everything');
  await f.waitFor(/everything$/);
  f.type(KEY.ctrlC);
  t.is(await line, '');
  t.is(f.screen.text(), `${PROMPT}destroy everything^C`);
  t.deepEqual(f.screen.cursor(), { x: 0, y: 1 });
});

test.serial('Ctrl-D ends input on an empty line only', async (t) => {
  const { f, line } = await prompted();
  f.type('x', KEY.home, KEY.ctrlD);
  await f.waitFor((s) => s === PROMPT.trimEnd());
  f.type(KEY.ctrlD);
  t.is(await line, null);
});

test.serial('Up and Down walk the history, back to the line being typed', async (t) => {
  const history = new History(null);
  history.add('show auto-sync');
  history.add('show folder');
  const { f, line } = await prompted({ history });
  f.type('cre', KEY.up);
  await f.waitFor(/show folder$/);
  f.type(KEY.up);
  await f.waitFor(/show auto-sync$/);
  f.type(KEY.down, KEY.down);
  await f.waitFor(/\$ cre$/);
  f.type('ate', KEY.enter);
  t.is(await line, 'create');
});

test.serial('a long line wraps in 80 columns and the cursor follows it', async (t) => {
  const { f, line } = await prompted();
  const long = `create auto-sync --from-fs fs:${'a'.repeat(150)}`;
  f.type(long);
  const end = PROMPT.length + long.length;
  await f.waitForCursor(end % 80, Math.floor(end / 80));
  const rows = f.screen.text().split('\n');
  t.is(rows.length, 3);
  t.true(rows.every((r) => r.length <= 80));
  t.is(rows.join(''), PROMPT + long);
  f.type(...Array((end % 80) + 3).fill(KEY.left));
  await f.waitForCursor(77, Math.floor(end / 80) - 1);
  f.type('X', KEY.enter);
  const entered = await line;
  t.is(entered, `${long.slice(0, long.length - (end % 80) - 3)}X${long.slice(long.length - (end % 80) - 3)}`);
});

test.serial('a line filling the row exactly puts the cursor on the next row', async (t) => {
  const { f, line } = await prompted();
  f.type('x'.repeat(80 - PROMPT.length));
  await f.waitForCursor(0, 1);
  f.type(KEY.enter);
  await line;
  t.is(f.screen.text(), PROMPT + 'x'.repeat(80 - PROMPT.length));
  t.deepEqual(f.screen.cursor(), { x: 0, y: 1 });
});

test.serial('the input ending (an SSH channel closing) ends the prompt with null', async (t) => {
  const { f, line } = await prompted();
  f.type('show');
  await f.waitFor(/show$/);
  f.term.input.push(null);
  t.is(await line, null);
});

test.serial('keys typed ahead after Enter go to the next read', async (t) => {
  const f = fakeTerminal();
  const first = readLine(f.term, options());
  f.type('show folder\rshow auto-sync\r');
  t.is(await first, 'show folder');
  t.is(await readLine(f.term, options()), 'show auto-sync');
  t.is(f.screen.text(), `${PROMPT}show folder\n${PROMPT}show auto-sync`);
});

test.serial('colour only when the terminal allows it', async (t) => {
  const sgr = /\u001b\[[0-9;]*m/;
  for (const color of [false, true]) {
    const { f, line } = await prompted({}, fakeTerminal({ color }));
    f.type('s?');
    await f.waitFor(/Create an/);
    f.type(KEY.enter);
    await line;
    t.is(sgr.test(f.written()), color, `color: ${color}`);
  }
});

test.serial('with no person at the terminal a plain line is read, the rest left for later', async (t) => {
  const f = fakeTerminal({ interactive: false });
  f.type('show folder\nshow auto-sync\n');
  t.is(await readLine(f.term, options()), 'show folder');
  t.is(await readLine(f.term, options()), 'show auto-sync');
  f.term.input.push(null);
  t.is(await readLine(f.term, options()), null);
  t.is(f.written(), '', 'no prompt, no echo');
});

test.serial('the LineEditor component draws the prompt, the line and printed help', async (t) => {
  let done: string | null | undefined;
  const ink = renderInk(<LineEditor prompt="$ " history={[]} services={{ complete, help: () => HELP }} columns={() => 100} color={false} onDone={(l) => (done = l)} />);
  t.teardown(() => ink.unmount());
  const settle = () => new Promise((r) => setTimeout(r, 50));
  await settle();
  ink.stdin.write('show');
  await settle();
  t.is(ink.lastFrame(), '$ show');
  ink.stdin.write('?');
  await settle();
  t.regex(ink.lastFrame() ?? '', /^\$ show\n {2}show {5}Show auto-sync.*\n {2}create .*\n\$ show$/);
  ink.stdin.write('\r');
  await settle();
  t.is(done, 'show');
});
