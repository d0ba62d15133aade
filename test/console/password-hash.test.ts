/** scrypt hashes of console passwords: the format, verification, and entries that cannot be trusted. */
import test from 'ava';
import { DEFAULT_PARAMS, hashPassword, parseHash, verifyNothing, verifyPassword } from '../../src/services/password-hash.js';

// cheap parameters keep the tests fast; one test uses the defaults
const FAST = { N: 1024, r: 8, p: 1 };

test('a hash is scrypt$N$r$p$salt$hash, holds nothing of the password, and has its own random salt', async (t) => {
  const password = 'correct horse battery';
  const a = await hashPassword(password, FAST);
  const b = await hashPassword(password, FAST);
  t.regex(a, /^scrypt\$1024\$8\$1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  t.not(a, b, 'two hashes of one password differ (random salt)');
  t.false(a.includes(password));
  t.false(a.includes(Buffer.from(password).toString('base64').replace(/=+$/, '')));
  const parsed = parseHash(a);
  t.deepEqual(parsed.params, FAST);
  t.is(parsed.salt.length, 16);
  t.is(parsed.hash.length, 32);
});

test('the right password verifies; a wrong one, a prefix, or a different case does not', async (t) => {
  const stored = await hashPassword('correct horse battery', FAST);
  t.true(await verifyPassword('correct horse battery', stored));
  t.false(await verifyPassword('correct horse batterx', stored));
  t.false(await verifyPassword('correct horse', stored));
  t.false(await verifyPassword('Correct horse battery', stored));
  t.false(await verifyPassword('', stored));
});

test('the default parameters: N=2^15, r=8, p=1, and they verify', async (t) => {
  t.deepEqual(DEFAULT_PARAMS, { N: 32768, r: 8, p: 1 });
  const stored = await hashPassword('pässwörd-ünïcode');
  t.true(stored.startsWith('scrypt$32768$8$1$'));
  // the same text typed in another Unicode normal form is the same password
  t.true(await verifyPassword('pässwörd-ünïcode'.normalize('NFD'), stored));
});

test('a hash made by hand with node:crypto verifies: the format is plain scrypt', async (t) => {
  const { scryptSync } = await import('node:crypto');
  const salt = Buffer.from('0123456789abcdef');
  const hash = scryptSync('by hand!', salt, 32, { N: 2048, r: 4, p: 2 });
  const stored = `scrypt$2048$4$2$${salt.toString('base64').replace(/=+$/, '')}$${hash.toString('base64').replace(/=+$/, '')}`;
  t.true(await verifyPassword('by hand!', stored));
  t.false(await verifyPassword('by hand', stored));
});

const badEntries: [string, string, RegExp][] = [
  ['not a hash', 'hunter2', /not a scrypt\$N\$r\$p\$salt\$hash entry/],
  ['another scheme', '$6$salt$hash', /not a scrypt/],
  ['N not a power of two', 'scrypt$1000$8$1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY', /N must be a power of two/],
  ['N too large (gigabytes)', 'scrypt$4194304$8$1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY', /N must be a power of two from 2 to 1048576/],
  ['memory over the bound', 'scrypt$1048576$8$1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY', /more than 256 MiB/],
  ['p too large', 'scrypt$1024$8$99$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY', /p must be from 1 to 16/],
  ['salt not base64', 'scrypt$1024$8$1$!!!$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY', /not base64/],
  ['salt too short', 'scrypt$1024$8$1$YWJj$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY', /salt is 3 bytes/],
  ['hash too short', 'scrypt$1024$8$1$MDEyMzQ1Njc4OWFiY2RlZg$YWJj', /hash is 3 bytes/],
];

for (const [what, entry, message] of badEntries) {
  test(`an entry that cannot be trusted is refused, not computed: ${what}`, async (t) => {
    t.throws(() => parseHash(entry), { message });
    t.false(await verifyPassword('hunter2', entry));
  });
}

test('checking against no entry is false and takes about as long as a real check', async (t) => {
  const stored = await hashPassword('correct horse battery');
  const timed = async (fn: () => Promise<boolean>) => {
    const start = process.hrtime.bigint();
    await fn();
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const real = await timed(() => verifyPassword('wrong password', stored));
  const none = await timed(() => verifyNothing('wrong password'));
  t.false(await verifyNothing('correct horse battery'));
  // the same work: within a factor of three either way on a busy machine
  t.true(none > real / 3 && none < real * 3, `no entry: ${none} ms, a real entry: ${real} ms`);
});

test('many checks at once all finish, with the right answers', async (t) => {
  const stored = await hashPassword('right one', FAST);
  const results = await Promise.all(Array.from({ length: 9 }, (_, i) => verifyPassword(i % 3 === 0 ? 'right one' : `wrong ${i}`, stored)));
  t.deepEqual(results, [true, false, false, true, false, false, true, false, false]);
});
