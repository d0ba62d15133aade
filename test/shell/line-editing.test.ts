import test from 'ava';
import { decodeKeys, type Key } from '../../src/shell/keys.js';
import { initialState, press, type Completion, type EditorServices, type LineState, type Outcome } from '../../src/shell/line-editor/editing.js';
import { columns, helpLines, promptRows, wrapWords } from '../../src/shell/line-editor/layout.js';
import { KEY } from './fake-terminal.js';

const WORDS = ['show', 'share', 'setup', 'create'];

/** completes the word before the cursor from WORDS, as the grammar does */
function completeFrom(words: string[]) {
  return (line: string, cursor: number): Completion => {
    const start = line.slice(0, cursor).lastIndexOf(' ') + 1;
    const partial = line.slice(start, cursor);
    const choices = words.filter((w) => w.startsWith(partial)).sort();
    let prefix = choices[0] ?? '';
    for (const w of choices) while (!w.startsWith(prefix)) prefix = prefix.slice(0, -1);
    return { replacement: prefix.length > partial.length ? prefix : null, start, choices };
  };
}

const services: EditorServices = {
  complete: completeFrom(WORDS),
  help: (line, cursor) => [{ word: 'show', description: `help at ${cursor} of "${line}"` }],
};

/** type raw terminal input into a state; the outcomes in order */
function typeInto(state: LineState, raw: string, with_ = services): { state: LineState; outcomes: Outcome[] } {
  const outcomes: Outcome[] = [];
  for (const key of decodeKeys(raw)) {
    const step = press(state, key, with_);
    state = step.state;
    outcomes.push(step.outcome);
  }
  return { state, outcomes };
}

const at = (line: string, cursor = line.length, history: string[] = []): LineState => ({ ...initialState(history, line), cursor });
const typed = (raw: string, from = at('')) => typeInto(from, raw).state;
const shows = (state: LineState) => `${state.line.slice(0, state.cursor)}|${state.line.slice(state.cursor)}`;

test('keys: text runs, control keys and escape sequences, each with its bytes', (t) => {
  const names = (raw: string) => decodeKeys(raw).map((k) => (k.name === 'text' ? `"${k.text}"` : k.name));
  t.deepEqual(names('show folder\r'), ['"show folder"', 'enter']);
  t.deepEqual(names('ab\u001b[Dc\u007f\u001b[3~'), ['"ab"', 'left', '"c"', 'backspace', 'delete']);
  t.deepEqual(names('\u001b[A\u001bOB\u001b[H\u001b[F\u001b[1~\u001b[4~\t'), ['up', 'down', 'home', 'end', 'home', 'end', 'tab']);
  t.deepEqual(names('\u0001\u0003\u0004\u0005\u000b\u0015\u0017\u0019\b'), ['ctrl-a', 'ctrl-c', 'ctrl-d', 'ctrl-e', 'ctrl-k', 'ctrl-u', 'ctrl-w', 'ctrl-y', 'backspace']);
  t.deepEqual(names('\u001b[1;5D\u001bf\u001b\u007f\u001b'), ['word-left', 'word-right', 'kill-word-before', 'escape']);
  t.deepEqual(names('a?b'), ['"a"', '"?"', '"b"'], "'?' is a key of its own");
  t.deepEqual(names('x\r\ny'), ['"x"', 'enter', '"y"'], 'a pasted CRLF is one Enter');
  t.deepEqual(names('\u001b[99~'), ['unknown']);
  const keys: Key[] = decodeKeys('one\rtwo\u001b[D');
  t.is(keys.map((k) => k.raw).join(''), 'one\rtwo\u001b[D', 'the bytes of every key, to hand back what was typed ahead');
});

test('printable input inserts at the cursor', (t) => {
  t.is(shows(typed('show')), 'show|');
  t.is(shows(typed('X', at('show', 2))), 'shX|ow');
});

test('Left/Right, Home/End, Ctrl-A/Ctrl-E move without going past the ends', (t) => {
  t.is(shows(typed(KEY.left + KEY.left, at('show'))), 'sh|ow');
  t.is(shows(typed(KEY.right, at('show', 1))), 'sh|ow');
  t.is(shows(typed(KEY.right, at('show'))), 'show|');
  t.is(shows(typed(KEY.left, at('show', 0))), '|show');
  t.is(shows(typed(KEY.home, at('show'))), '|show');
  t.is(shows(typed(KEY.end, at('show', 0))), 'show|');
  t.is(shows(typed(KEY.ctrlA, at('show'))), '|show');
  t.is(shows(typed(KEY.ctrlE, at('show', 1))), 'show|');
  t.is(shows(typed('\u001b[1;5D', at('show auto-sync'))), 'show |auto-sync');
  t.is(shows(typed('\u001b[1;5C', at('show auto-sync', 0))), 'show| auto-sync');
});

test('Left/Right/Backspace never split a character outside the BMP', (t) => {
  t.is(shows(typed(KEY.left, at('a😀'))), 'a|😀');
  t.is(typed(KEY.backspace, at('a😀')).line, 'a');
  t.is(typed(KEY.delete, at('😀b', 0)).line, 'b');
});

test('Backspace deletes before the cursor, Delete under it', (t) => {
  t.is(shows(typed(KEY.backspace, at('show', 2))), 's|ow');
  t.is(shows(typed(KEY.backspace, at('show', 0))), '|show');
  t.is(shows(typed(KEY.delete, at('show', 1))), 's|ow');
  t.is(shows(typed(KEY.delete, at('show'))), 'show|');
});

test('Ctrl-U kills to the start, Ctrl-K to the end, Ctrl-W the word before; Ctrl-Y puts it back', (t) => {
  t.is(shows(typed(KEY.ctrlU, at('show auto-sync', 5))), '|auto-sync');
  t.is(shows(typed(KEY.ctrlK, at('show auto-sync', 4))), 'show|');
  t.is(shows(typed(KEY.ctrlW, at('show auto-sync  '))), 'show |');
  t.is(shows(typed(KEY.ctrlW, at('show auto-sync', 9))), 'show |-sync');
  t.is(shows(typed(KEY.ctrlW, at('show', 0))), '|show');
  t.is(shows(typed(`${KEY.ctrlW}\u0019\u0019`, at('show folder'))), 'show folderfolder|');
});

test('Ctrl-D deletes under the cursor, and ends input only on an empty line', (t) => {
  t.is(shows(typed(KEY.ctrlD, at('show', 0))), '|how');
  t.deepEqual(typeInto(at('show'), KEY.ctrlD).outcomes, [{ kind: 'edit' }]);
  t.deepEqual(typeInto(at(''), KEY.ctrlD).outcomes, [{ kind: 'eof' }]);
});

test('Enter submits and Ctrl-C cancels, keeping the line as it is', (t) => {
  const entered = typeInto(at('show'), KEY.enter);
  t.deepEqual(entered.outcomes, [{ kind: 'submit' }]);
  t.is(entered.state.line, 'show');
  t.deepEqual(typeInto(at('show'), KEY.ctrlC).outcomes, [{ kind: 'cancel' }]);
});

test('Up/Down walk the history and come back to the line being edited', (t) => {
  const start = at('draft', 5, ['one', 'two']);
  t.is(typed(KEY.up, start).line, 'two');
  t.is(typed(KEY.up + KEY.up, start).line, 'one');
  t.is(typed(KEY.up + KEY.up + KEY.up, start).line, 'one', 'the oldest entry stops Up');
  const back = typed(KEY.up + KEY.up + KEY.down + KEY.down, start);
  t.is(shows(back), 'draft|', 'the edited line is kept');
  t.is(typed(KEY.down, start).line, 'draft', 'Down below the newest does nothing');
  t.is(shows(typed(KEY.up, at('', 0, ['show auto-sync']))), 'show auto-sync|');
  t.is(typed(KEY.up, at('x', 1, [])).line, 'x', 'no history, nothing to recall');
});

test('TAB puts in the common prefix, and a unique word with a space', (t) => {
  t.is(shows(typed('s\t')), 's|', 'show/share/setup: nothing in common to add');
  t.is(shows(typed('sh\t')), 'sh|');
  t.is(shows(typed('sho\t')), 'show |');
  t.is(shows(typed('cr\t')), 'create |');
  t.is(shows(typed('\t', at('sho auto-sync', 3))), 'show |auto-sync', 'no second space before the next word');
  // the grammar's completer already adds the space to a unique word
  const withSpace: EditorServices = { ...services, complete: () => ({ replacement: 'show ', start: 0, choices: ['show'] }) };
  t.is(shows(typeInto(at('sh'), '\t', withSpace).state), 'show |');
  t.is(shows(typed('zz\t')), 'zz|', 'no candidates, no change');
});

test('a second TAB in a row lists the choices; another key in between does not', (t) => {
  const twice = typeInto(at('sh'), '\t\t');
  t.deepEqual(twice.outcomes, [{ kind: 'edit' }, { kind: 'choices', choices: ['share', 'show'] }]);
  t.is(twice.state.line, 'sh', 'the line stays as it was');
  t.deepEqual(
    typeInto(at('s'), `\t${KEY.left}${KEY.right}\t`).outcomes.map((o) => o.kind),
    ['edit', 'edit', 'edit', 'edit'],
  );
  // the first TAB completes a prefix, the second lists what starts with it
  const prefix = typeInto(at(''), 'se\t\t', { ...services, complete: completeFrom(['setup', 'setting']) });
  t.is(prefix.state.line, 'set', 'setup/setting share "set"');
  t.deepEqual(prefix.outcomes.at(-1), { kind: 'choices', choices: ['setting', 'setup'] });
  t.deepEqual(
    typeInto(at('zz'), '\t\t').outcomes.map((o) => o.kind),
    ['edit', 'edit'],
    'nothing to list, nothing listed',
  );
});

test("'?' asks for help at the cursor and is not inserted", (t) => {
  const asked = typeInto(at('show auto-sync', 4), '?');
  t.is(shows(asked.state), 'show| auto-sync');
  t.deepEqual(asked.outcomes, [{ kind: 'help', entries: [{ word: 'show', description: 'help at 4 of "show auto-sync"' }] }]);
  t.is(typed('a?b').line, 'ab');
});

test('keys with no meaning change nothing', (t) => {
  t.is(shows(typed('\u001b[99~\u001b', at('show', 2))), 'sh|ow');
});

test('the prompt line wraps into rows of the width, with the cursor row and column', (t) => {
  t.deepEqual(promptRows('$ ', 'show', 4, 80), { rows: ['$ show'], cursor: { x: 6, y: 0 } });
  t.deepEqual(promptRows('$ ', 'abcdefgh', 3, 4), { rows: ['$ ab', 'cdef', 'gh'], cursor: { x: 1, y: 1 } });
  t.deepEqual(promptRows('$ ', 'abcdef', 6, 4), { rows: ['$ ab', 'cdef', ''], cursor: { x: 0, y: 2 } }, 'a full row puts the cursor on the next');
  const long = promptRows('syncsh@node1:/$ ', 'x'.repeat(200), 200, 80);
  t.true(long.rows.every((r) => r.length <= 80));
  t.is(long.rows.join(''), `syncsh@node1:/$ ${'x'.repeat(200)}`);
  t.deepEqual(long.cursor, { x: 216 % 80, y: 2 });
});

test('choices go in columns, down then across, fitting the width', (t) => {
  const words = ['auto-sync', 'folder', 'snapshot', 'share', 'setup', 'show', 'help'];
  const lines = columns(words, 40);
  t.true(lines.every((l) => l.length <= 40));
  t.deepEqual(lines, ['auto-sync  share      help', 'folder     setup', 'snapshot   show']);
  t.deepEqual(columns(words, 10), words, 'one column when the width allows no more');
  t.deepEqual(columns([], 80), []);
  t.true(columns(['a'.repeat(100)], 80)[0].length <= 80);
});

test('help entries align their words and wrap their descriptions under themselves', (t) => {
  const lines = helpLines(
    [
      { word: 'show', description: 'Show objects' },
      { word: 'auto-sync', description: 'Replication services between folders, on a schedule, with retention' },
    ],
    40,
  );
  t.deepEqual(lines, ['  show        Show objects', '  auto-sync   Replication services', '              between folders, on a', '              schedule, with retention']);
  t.true(lines.every((l) => l.length <= 40));
  t.deepEqual(helpLines([{ word: '', description: 'This line does not parse.' }], 80), ['  This line does not parse.'], 'a message with no word');
});

test('paragraphs wrap at spaces, splitting only words longer than a line', (t) => {
  t.deepEqual(wrapWords('one two three four', 9), ['one two', 'three', 'four']);
  t.deepEqual(wrapWords('abcdefghij', 4), ['abcd', 'efgh', 'ij']);
  t.deepEqual(wrapWords('a\nb', 80), ['a', 'b']);
});
