// Store locations as one string, so a store can be named in an environment variable (RUNWARDEN_STORE, which
// ProcessRunLauncher passes to every run worker) or on the command line (`runwarden runs --store …`).
//
//   sqlite:/var/lib/runwarden/runs.db     absolute path
//   sqlite:./runs.db                      relative to `baseDir` (default: the current directory)
//   sqlite:///var/lib/runwarden/runs.db   URL form of an absolute path
//   postgres://user:password@host:5432/database?schema=runwarden   (postgresql:// too; schema optional)
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { SqliteRunStore } from './sqlite/sqlite-store.js';
// No `pg` here: the PostgreSQL store imports its driver on first use, so SQLite users never load it.
import { PostgresRunStore } from './postgres/postgres-store.js';
import { validateSchemaName } from './postgres/migrations.js';
import type { RunStore } from '../core/types.js';
import { redactCredentials } from './redact.js';

export { redactCredentials };

/** The environment variable a run worker reads its store location from. */
export const STORE_ENV = 'RUNWARDEN_STORE';

/** The schema a PostgreSQL store URL uses when it names none. */
const DEFAULT_POSTGRES_SCHEMA = 'runwarden';

export type StoreLocation =
  | { kind: 'sqlite'; path: string }
  /** `url` is the connection string without the `schema` parameter. */
  | { kind: 'postgres'; url: string; schema: string };

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
      `Invalid store URL ${JSON.stringify(redactCredentials(String(url)))}: expected sqlite:<path to the database file> (e.g. sqlite:/var/lib/runwarden/runs.db) or postgres://user@host:5432/database.`,
    );
  }
  const scheme = match[1]!.toLowerCase();
  let rest = match[2]!;
  if (scheme === 'postgres' || scheme === 'postgresql') return parsePostgresUrl(text);
  if (scheme !== 'sqlite') {
    throw new ConfigError(
      `Unsupported store URL ${JSON.stringify(redactCredentials(String(url)))}: expected sqlite:<path> (e.g. sqlite:/var/lib/runwarden/runs.db) or postgres://user@host:5432/database.`,
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

/** postgres://… or postgresql://…, with an optional `schema` parameter that is Runwarden's, not pg's. */
function parsePostgresUrl(text: string): StoreLocation {
  const shown = JSON.stringify(redactCredentials(text));
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new ConfigError(
      `Invalid store URL ${shown}: expected postgres://user:password@host:5432/database (optionally ?schema=name).`,
    );
  }
  const schemas = parsed.searchParams.getAll('schema');
  if (schemas.length > 1) throw new ConfigError(`Invalid store URL ${shown}: give schema= at most once.`);
  let schema = DEFAULT_POSTGRES_SCHEMA;
  if (schemas.length === 1) {
    try {
      schema = validateSchemaName(schemas[0]);
    } catch (error) {
      throw new ConfigError(`Invalid store URL ${shown}: ${(error as Error).message}`);
    }
    parsed.searchParams.delete('schema');
  }
  return { kind: 'postgres', url: parsed.toString(), schema };
}

/** The URL of a location, absolute, as run workers should receive it. */
export function formatStoreUrl(location: StoreLocation): string {
  if (location.kind === 'sqlite') return `${location.kind}:${location.path}`;
  if (location.schema === DEFAULT_POSTGRES_SCHEMA) return location.url;
  const url = new URL(location.url);
  url.searchParams.set('schema', location.schema);
  return url.toString();
}

/** Opens the store a URL names (see parseStoreUrl). The caller closes it. */
export function openStore(
  url: string,
  options: OpenStoreOptions = {},
): RunStore & { close(): Promise<void> } {
  const location = parseStoreUrl(url, options);
  return openStoreAt(location, options);
}

/** Opens the store at a parsed location. A PostgreSQL store connects on its first call. */
export function openStoreAt(
  location: StoreLocation,
  options: { busyTimeoutMs?: number } = {},
): RunStore & { close(): Promise<void> } {
  if (location.kind === 'postgres') {
    return new PostgresRunStore({ connectionString: location.url }, { schema: location.schema });
  }
  return new SqliteRunStore({ path: location.path, busyTimeoutMs: options.busyTimeoutMs });
}
