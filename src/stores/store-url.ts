// Store locations as one string, so a store can be named in an environment variable (RUNWARDEN_STORE, which
// ProcessRunLauncher passes to every run worker) or on the command line (`runwarden runs --store …`).
//
//   sqlite:/var/lib/runwarden/runs.db     absolute path
//   sqlite:./runs.db                      relative to `baseDir` (default: the current directory)
//   sqlite:///var/lib/runwarden/runs.db   URL form of an absolute path
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { SqliteRunStore } from './sqlite/sqlite-store.js';
import type { RunStore } from '../core/types.js';
import { redactCredentials } from './redact.js';

export { redactCredentials };

/** The environment variable a run worker reads its store location from. */
export const STORE_ENV = 'RUNWARDEN_STORE';

export type StoreLocation = { kind: 'sqlite'; path: string };

export interface OpenStoreOptions {
  /** Relative sqlite paths resolve against this directory. Default: process.cwd(). */
  baseDir?: string;
  /** SqliteRunStore busy timeout. */
  busyTimeoutMs?: number;
}

/** Parses a store URL into an absolute location. Throws ConfigError naming the URL and the accepted forms. */
export function parseStoreUrl(url: string, options: { baseDir?: string } = {}): StoreLocation {
  const text = typeof url === 'string' ? url.trim() : '';
  const match = /^([a-z][a-z0-9+.-]*):(.*)$/i.exec(text);
  if (!match) {
    throw new ConfigError(
      `Invalid store URL ${JSON.stringify(redactCredentials(String(url)))}: expected sqlite:<path to the database file>, e.g. sqlite:/var/lib/runwarden/runs.db.`,
    );
  }
  const scheme = match[1]!.toLowerCase();
  let rest = match[2]!;
  if (scheme !== 'sqlite') {
    throw new ConfigError(
      `Unsupported store URL ${JSON.stringify(redactCredentials(String(url)))}: only sqlite:<path> is supported (e.g. sqlite:/var/lib/runwarden/runs.db).`,
    );
  }
  // sqlite:///abs/path (URL style) → /abs/path; sqlite://relative is ambiguous, so refuse it.
  if (rest.startsWith('//')) {
    if (!rest.startsWith('///')) {
      throw new ConfigError(
        `Invalid store URL ${JSON.stringify(redactCredentials(String(url)))}: use sqlite:/absolute/path, sqlite:///absolute/path or sqlite:relative/path.`,
      );
    }
    rest = rest.slice(2);
  }
  if (rest === '' || rest === ':memory:') {
    throw new ConfigError(
      `Invalid store URL ${JSON.stringify(redactCredentials(String(url)))}: give the path of a database file (an in-memory database can't be shared with run workers).`,
    );
  }
  const path = isAbsolute(rest) ? rest : resolve(options.baseDir ?? process.cwd(), rest);
  return { kind: 'sqlite', path };
}

/** The URL of a location, absolute, as run workers should receive it. */
export function formatStoreUrl(location: StoreLocation): string {
  return `${location.kind}:${location.path}`;
}

/** Opens the store a URL names (see parseStoreUrl). The caller closes it. */
export function openStore(
  url: string,
  options: OpenStoreOptions = {},
): RunStore & { close(): Promise<void> } {
  const location = parseStoreUrl(url, options);
  return openStoreAt(location, options);
}

function openStoreAt(
  location: StoreLocation,
  options: { busyTimeoutMs?: number } = {},
): RunStore & { close(): Promise<void> } {
  return new SqliteRunStore({ path: location.path, busyTimeoutMs: options.busyTimeoutMs });
}
