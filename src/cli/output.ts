// Output helpers of the `runwarden` CLI: aligned tables and one-line errors.
import { CommanderError } from 'commander';
import { ConfigError, RunwardenError } from '../core/errors.js';

/** A usage mistake (bad flag value, nothing to do): exit code 2, like a bad config. */
export class UsageError extends RunwardenError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** Prints `error` as one line on stderr and returns the exit code: 2 for usage/config problems, else 1. */
export function reportError(error: unknown): number {
  if (error instanceof CommanderError) return reportUsage(error);
  const message = error instanceof Error ? error.message || error.name : String(error);
  process.stderr.write(`runwarden: ${oneLine(message)}\n`);
  if (process.env.RUNWARDEN_DEBUG && error instanceof Error && error.stack) {
    process.stderr.write(`${error.stack}\n`);
  }
  return error instanceof ConfigError || error instanceof UsageError ? 2 : 1;
}

/**
 * Commander's outcomes: --help and --version (exit 0, already printed); no command at all (the help, already
 * on stderr; exit 2); any other is a usage error, printed as one line naming the command's --help (exit 2).
 */
function reportUsage(error: CommanderError & { command?: string }): number {
  if (error.exitCode === 0) return 0;
  if (error.code === 'commander.help') return 2;
  const text = error.message
    .replace(/^error: /, '')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .join(' ')
    .replace(/\.$/, '');
  process.stderr.write(`runwarden: ${text}; see ${error.command ?? 'runwarden'} --help\n`);
  return 2;
}

/** Collapses a multi-line message to one line. */
export function oneLine(text: string): string {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .join(' | ');
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Epoch ms as an ISO timestamp, or '-'. */
export function time(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString();
}
