/**
 * Grammar fuzz (issue 15): 10,000 generated and mutated command lines
 * through the parser, TAB completion and '?' help. Every line either parses
 * or gets a GrammarError whose message is one sentence (no stack, no
 * "undefined", no bare exception); completion and help never throw at any
 * cursor; nothing takes long (a hang would be a runaway loop in the walk).
 */
import test from 'ava';
import fc from 'fast-check';
import { grammar } from '../../src/commands/index.js';
import { match, GrammarError } from '../../src/commands/grammar/match.js';
import { complete, helpAt } from '../../src/commands/grammar/complete.js';
import { commandLine, fuzzCtx } from './grammar-lines.js';

const RUNS = Number(process.env.SYNCSH_FUZZ_RUNS ?? 10_000);

/** what a grammar error must look like to a person: one sentence, no internals */
function badMessage(message: string, line = ''): string | null {
  if (!message.trim()) return 'empty';
  if (/\n\s+at\s/.test(message)) return 'a stack trace';
  // the words typed may be quoted back; anything else "undefined" came from inside
  const own = line
    .split(/[\s'"\\=]+/)
    .filter((w) => w.length > 2)
    .reduce((m, w) => m.split(w).join(''), message);
  if (/\b(undefined|null|NaN|\[object Object\])\b/.test(own)) return 'an internal value';
  if (/^(TypeError|RangeError|ReferenceError|SyntaxError|Error):/.test(message)) return 'a bare exception';
  if (!/[.?!)]$/.test(message.trim())) return 'not a sentence';
  return null;
}

test(`${RUNS} generated and mutated lines: parsed or a grammar error; completion and help never throw`, (t) => {
  const g = grammar();
  let parsed = 0;
  let refused = 0;
  fc.assert(
    fc.property(commandLine(), fc.nat(), (line, at) => {
      const started = performance.now();
      try {
        match(g, line, fuzzCtx);
        parsed++;
      } catch (error) {
        if (!(error instanceof GrammarError)) throw new Error(`not a grammar error for ${JSON.stringify(line)}: ${(error as Error).stack}`);
        const bad = badMessage(error.message, line);
        if (bad) throw new Error(`${bad} in the error for ${JSON.stringify(line)}: ${JSON.stringify(error.message)}`);
        refused++;
      }
      const cursor = at % (line.length + 1);
      const c = complete(g, line, cursor, fuzzCtx);
      if (c.start < 0 || c.start > cursor) throw new Error(`completion of ${JSON.stringify(line)} at ${cursor} replaces from ${c.start}`);
      helpAt(g, line, cursor, fuzzCtx);
      const took = performance.now() - started;
      if (took > 250) throw new Error(`${JSON.stringify(line)} took ${took.toFixed(0)} ms`);
    }),
    { numRuns: RUNS, seed: process.env.SYNCSH_FUZZ_SEED ? Number(process.env.SYNCSH_FUZZ_SEED) : undefined },
  );
  t.log(`${parsed} parsed, ${refused} refused with a grammar error`);
  // the generator reaches both sides, or it tests little
  t.true(parsed > RUNS / 20, `${parsed} lines parsed`);
  t.true(refused > RUNS / 20, `${refused} lines refused`);
});

test('the message check itself', (t) => {
  t.is(badMessage('Unknown command foo.'), null);
  t.is(badMessage("Incomplete command 'show': expected auto-sync (type '?' to see what each does)."), null);
  t.truthy(badMessage('TypeError: x is not a function'));
  t.truthy(badMessage('bad value undefined.'));
  t.truthy(badMessage('Error\n    at foo (x.js:1:2)'));
});
