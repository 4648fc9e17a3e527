// Output helpers of the `runwarden` CLI: aligned tables, colour, and one-line errors.
import { inspect, stripVTControlCharacters } from 'node:util';
import { CommanderError } from 'commander';
import {
  ConfigError,
  RunwardenError,
  WORKER_SUPERSEDED_EXIT_CODE,
  WorkerSupersededError,
} from '../core/errors.js';

/** A usage mistake (bad flag value, nothing to do): exit code 2, like a bad config. */
export class UsageError extends RunwardenError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/**
 * Prints `error` as one line on stderr and returns the exit code: 2 for usage/config problems, 3 for a run
 * worker superseded by a newer one (WORKER_SUPERSEDED_EXIT_CODE), else 1.
 */
export function reportError(error: unknown): number {
  if (error instanceof CommanderError) return reportUsage(error);
  const message = error instanceof Error ? error.message || error.name : String(error);
  process.stderr.write(`runwarden: ${oneLine(message)}\n`);
  if (process.env.RUNWARDEN_DEBUG && error instanceof Error && error.stack) {
    process.stderr.write(`${error.stack}\n`);
  }
  if (error instanceof WorkerSupersededError) return WORKER_SUPERSEDED_EXIT_CODE;
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

/** Left-aligned columns separated by two spaces; the last column is not padded. Colour codes take no width. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : padEnd(cell, widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `text` padded with spaces to `width` visible characters. */
export function padEnd(text: string, width: number): string {
  return text + ' '.repeat(Math.max(0, width - visibleLength(text)));
}

function visibleLength(text: string): number {
  return stripVTControlCharacters(text).length;
}

/**
 * Whether to colour what is written to `stream`: never with NO_COLOR set (no-color.org: any non-empty
 * value), always with FORCE_COLOR set (except 0 or false), else only on a terminal that is not "dumb".
 */
export function colorEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return stream.isTTY === true && env.TERM !== 'dumb';
}

export type Color = 'red' | 'green' | 'yellow' | 'cyan' | 'magenta' | 'bold';
export type Paint = (color: Color, text: string) => string;

/** Colours text with ANSI codes (util.inspect's table: no dependency, any Node 20), or not at all. */
export function painter(enabled: boolean): Paint {
  if (!enabled) return (_color, text) => text;
  return (color, text) => {
    const [open, close] = inspect.colors[color]!;
    return `\x1b[${open}m${text}\x1b[${close}m`;
  };
}

/** Epoch ms as an ISO timestamp, or '-'. */
export function time(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString();
}

/** A duration for people: `850ms`, `42s`, `1m 05s`, `2h 03m`, `3d 04h`; '-' when there is none. */
export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  const total = Math.max(0, Math.floor(ms));
  if (total < 1000) return `${total}ms`;
  const s = Math.floor(total / 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d ${two(Math.floor(s / 3600) % 24)}h`;
}
