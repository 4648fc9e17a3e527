// `runwarden demo` from the built package: all five outcomes, exit code 0.
import { expect, it } from 'vitest';
import { runCli } from './processes.js';

it('runwarden demo shows all five outcomes and exits 0', { timeout: 90_000 }, async () => {
  const { code, stdout, stderr } = await runCli(['demo'], { timeoutMs: 80_000 });
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
});
