import test from 'ava';
import { renderTable, fitWidths, truncate, render } from '../../src/shell/render.js';

const columns = [
  { key: 'name', header: 'NAME' },
  { key: 'source', header: 'SOURCE', flexible: true },
  { key: 'state', header: 'STATE' },
];
const rows = [{ name: 'vol-folder-000', source: 'fs:vol/a/very/long/path/that/goes/on/and/on/and/on/forever', state: 'online' }];

test('tables fit the width, shrinking flexible columns first', (t) => {
  for (const width of [80, 40]) {
    const lines = renderTable(columns, rows, { width, color: false });
    t.true(
      lines.every((l) => l.length <= width),
      lines.join('\n'),
    );
    t.true(lines[1].startsWith('vol-folder-000'));
    t.true(lines[1].includes('…'));
  }
  t.deepEqual(fitWidths(columns, rows, 200), [14, rows[0].source.length, 6]);
  t.is(truncate('abcdef', 4), 'abc…');
});

test('empty tables say so; NO_COLOR output has no escapes', (t) => {
  t.deepEqual(render({ kind: 'table', columns, rows: [], data: [], empty: 'No services.' }, { width: 80, color: false }), ['No services.']);
  t.false(renderTable(columns, rows, { width: 80, color: false }).join('').includes('\u001b'));
  t.true(renderTable(columns, rows, { width: 80, color: true })[0].includes('\u001b[1m'));
});
