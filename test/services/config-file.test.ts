/**
 * ConfigFile's read path: a file that is its last good copy is read without
 * conf's schema compiler (the CLI's start-up), and any other file is still
 * validated by conf, so a hand edit that breaks the schema is caught.
 */
import test from 'ava';
import Conf from 'conf';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigFile, ConfigDamagedError, lastGoodOf } from '../../src/services/config-file.js';
import { serviceSchema } from '../../src/services/auto-sync/model.js';

type File = { things: Record<string, { n: number }>; note?: string };
const schema = { things: { type: 'object', additionalProperties: { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } }, default: {} } };

function dir(t: { teardown(fn: () => void): void }) {
  const d = mkdtempSync(path.join(os.tmpdir(), 'syncsh-config-file-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const open = (cwd: string) => new ConfigFile<File>({ cwd, configName: 'things', projectName: 'syncsh', schema: schema as never, defaults: { things: {} } });

test('what was written reads back, from a fresh reader, and the last good copy is the file', (t) => {
  const cwd = dir(t);
  open(cwd).set('things', { a: { n: 1 } });
  const file = path.join(cwd, 'things.json');
  t.is(readFileSync(lastGoodOf(file), 'utf8'), readFileSync(file, 'utf8'));
  t.deepEqual(open(cwd).get('things'), { a: { n: 1 } });
  t.is(open(cwd).get('note'), undefined);
});

test('a hand edit that breaks the schema is caught although the fast read skips validation', (t) => {
  const cwd = dir(t);
  open(cwd).set('things', { a: { n: 1 } });
  const file = path.join(cwd, 'things.json');
  writeFileSync(file, JSON.stringify({ things: { a: { n: 'one' } } }));
  const error = t.throws(() => open(cwd).get('things'), { instanceOf: ConfigDamagedError });
  t.regex(error!.message, /things\.json is damaged: it does not hold what it must \("things\/a\/n" must be integer\)/);
  t.is(JSON.parse(readFileSync(file, 'utf8')).things.a.n, 'one', 'the damaged file is left as it is');
});

test('a hand edit that keeps to the schema is read (conf validates it)', (t) => {
  const cwd = dir(t);
  open(cwd).set('things', { a: { n: 1 } });
  const file = path.join(cwd, 'things.json');
  writeFileSync(file, JSON.stringify({ things: { b: { n: 2 } } }));
  t.deepEqual(open(cwd).get('things'), { b: { n: 2 } });
});

test('a file without a schema is plain JSON: its defaults fill what it lacks; not JSON is still damaged', (t) => {
  const cwd = dir(t);
  const plain = () => new ConfigFile<{ list: Record<string, number> }>({ cwd, configName: 'plain', projectName: 'syncsh', defaults: { list: {} } });
  const file = path.join(cwd, 'plain.json');
  writeFileSync(file, '{}');
  t.deepEqual(plain().get('list'), {});
  writeFileSync(file, '{"list": ');
  t.throws(() => plain().get('list'), { instanceOf: ConfigDamagedError, message: /plain\.json is damaged: it is not valid JSON/ });
});

test("the schemas the stores pass are valid JSON Schema (conf's meta-schema check is off at run time)", (t) => {
  const cwd = dir(t);
  t.notThrows(() => new Conf({ cwd, configName: 'check', projectName: 'syncsh', schema: { services: { type: 'object', additionalProperties: serviceSchema, default: {} } } as never }));
  t.notThrows(() => new Conf({ cwd, configName: 'check2', projectName: 'syncsh', schema: schema as never }));
});
