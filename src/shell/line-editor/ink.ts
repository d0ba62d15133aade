/**
 * ink, loaded for a person at a terminal. ink decides once, as it loads,
 * whether it runs in CI (CI or CONTINUOUS_INTEGRATION set) and then draws
 * only the last frame: nothing while a person types. The prompt line is
 * interactive wherever it runs (a tmux test on a CI machine too), so ink
 * loads with those variables hidden. Import ink through this module only:
 * once ink is loaded elsewhere, its choice is made.
 */
const CI_VARIABLES = ['CI', 'CONTINUOUS_INTEGRATION'] as const;
const saved = CI_VARIABLES.map((name) => [name, process.env[name]] as const);
for (const [name] of saved) delete process.env[name];
let ink: typeof import('ink');
try {
  ink = await import('ink');
} finally {
  for (const [name, value] of saved) if (value !== undefined) process.env[name] = value;
}

export const { Box, Static, Text, render, useApp, useCursor, useStdin, useStdout } = ink;
