// `runwarden demo` from the built package: all five outcomes, exit code 0, coloured when forced.
import { stripVTControlCharacters } from 'node:util';
import { expect, it } from 'vitest';
import { runCli } from './processes.js';

// stdout is a pipe here, so colour only comes from FORCE_COLOR (an empty NO_COLOR counts as unset). Plain
// output to a pipe is covered in test/demo-timeline.test.ts (colorEnabled).
it('runwarden demo shows all five outcomes and exits 0', { timeout: 90_000 }, async () => {
  const result = await runCli(['demo'], { timeoutMs: 80_000, env: { FORCE_COLOR: '1', NO_COLOR: '' } });
  const { code, stderr } = result;
  const stdout = stripVTControlCharacters(result.stdout);
  expect(stderr).toBe('');
  expect(code, stdout).toBe(0);
  for (const word of ['START_TIMEOUT', 'MAX_RUNTIME_EXCEEDED', 'CANCELED', 'SUCCESS', 'resumed']) {
    expect(stdout).toContain(word);
  }
  // Live progress, then the table of final outcomes.
  expect(stdout).toMatch(/\+ *\d+\.\d\ds {2}crash-resume +ENGINE_EVENT +Run worker resumed \(attempt 1\)/);
  const table = stdout.slice(stdout.indexOf('RUN              FINAL STATUS'));
  expect(table).toMatch(/succeeds +SUCCESS +- +0 +yes/);
  expect(table).toMatch(/never-starts +FAILURE +START_TIMEOUT +0 +yes/);
  expect(table).toMatch(/crash-resume +SUCCESS +- +1 +yes/);
  expect(table).toMatch(/max-runtime +FAILURE +MAX_RUNTIME_EXCEEDED +0 +yes/);
  expect(table).toMatch(/ignores-sigterm +CANCELED +- +0 +yes/);
  expect(stdout).toContain('All five outcomes happened as expected');
  // Status words and outcomes in colour: green SUCCESS, red FAILURE, yellow CANCELED.
  expect(result.stdout).toContain('\x1b[32mRUN_SUCCESS\x1b[39m');
  expect(result.stdout).toContain('\x1b[31mFAILURE\x1b[39m');
  expect(result.stdout).toContain('\x1b[33mCANCELED\x1b[39m');
  expect(result.stdout).toContain('\x1b[32myes: SUCCESS\x1b[39m');
});
