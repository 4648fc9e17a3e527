// PostgreSQL store URLs and runwarden.yaml's storage.postgres: parsing, defaults, masking of passwords.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../src/core/errors.js';
import { parseConfigFile, storeUrlOf, withStore } from '../src/cli/config-file.js';
import { formatStoreUrl, openStore, parseStoreUrl } from '../src/stores/store-url.js';
import { PostgresRunStore } from '../src/stores/postgres/postgres-store.js';

const FILE = '/srv/app/runwarden.yaml';

describe('postgres store URLs', () => {
  it('accepts postgres:// and postgresql://, with an optional schema', () => {
    expect(parseStoreUrl('postgres://bob@db:5432/runs')).toEqual({
      kind: 'postgres',
      url: 'postgres://bob@db:5432/runs',
      schema: 'runwarden',
    });
    expect(parseStoreUrl('postgresql://bob:pw@db/runs?schema=team_a&sslmode=require')).toEqual({
      kind: 'postgres',
      url: 'postgresql://bob:pw@db/runs?sslmode=require',
      schema: 'team_a',
    });
  });

  it('formats back to a URL a worker can open, schema included', () => {
    for (const url of ['postgres://bob@db:5432/runs', 'postgres://bob:pw@db/runs?schema=team_a']) {
      expect(formatStoreUrl(parseStoreUrl(url))).toBe(url);
    }
  });

  it('refuses a bad schema or a malformed URL, with the password masked', () => {
    for (const [url, text] of [
      [
        'postgres://bob:secret@db/runs?schema=Bad-Name',
        /"postgres:\/\/bob:\*\*\*@db\/runs\?schema=Bad-Name": A PostgreSQL schema name/,
      ],
      ['postgres://bob:secret@db/runs?schema=a&schema=b', /schema= at most once/],
      [
        'postgres://bob:secret@db:99999/runs',
        /Invalid store URL "postgres:\/\/bob:\*\*\*@db:99999\/runs": expected postgres:\/\//,
      ],
    ] as const) {
      expect(() => parseStoreUrl(url), url).toThrow(ConfigError);
      expect(() => parseStoreUrl(url), url).toThrow(text);
      expect(() => parseStoreUrl(url), url).not.toThrow(/secret/);
    }
  });

  it('openStore makes a PostgresRunStore without connecting (it connects on first use)', async () => {
    const store = openStore('postgres://nobody@127.0.0.1:1/none?schema=rw_x');
    expect(store).toBeInstanceOf(PostgresRunStore);
    expect((store as PostgresRunStore).schema).toBe('rw_x');
    await store.close();
  });
});

describe('runwarden.yaml storage.postgres', () => {
  it('names the store workers get, with the schema', () => {
    const config = parseConfigFile(
      'storage:\n  postgres:\n    url: postgres://bob@db/runs\n    schema: team_a\n',
      FILE,
    );
    expect(config.storage.postgres).toEqual({ url: 'postgres://bob@db/runs', schema: 'team_a' });
    expect(storeUrlOf(config)).toBe('postgres://bob@db/runs?schema=team_a');
    const plain = parseConfigFile(
      'storage: { postgres: { url: "postgresql://bob@db/runs?schema=b" } }\n',
      FILE,
    );
    expect(storeUrlOf(plain)).toBe('postgresql://bob@db/runs?schema=b');
  });

  it('refuses sqlite and postgres together, a non-postgres URL and a bad schema, masking passwords', () => {
    for (const [text, message] of [
      [
        'storage: { sqlite: { path: a.db }, postgres: { url: "postgres://db/runs" } }',
        'storage: expected sqlite or postgres, not both',
      ],
      [
        'storage: { postgres: { url: "mysql://bob:secret@db/runs" } }',
        'storage.postgres.url: expected a postgres:// or postgresql:// URL, e.g. postgres://user@127.0.0.1:5432/database, got the string "mysql://bob:***@db/runs"',
      ],
      [
        'storage: { postgres: { url: "postgres://bob:secret@db/runs", schema: "Team" } }',
        'storage.postgres.schema: expected a schema name of lower-case letters',
      ],
      ['storage: { postgres: { schema: a } }', 'storage.postgres.url: missing'],
    ] as const) {
      expect(() => parseConfigFile(`${text}\n`, FILE), text).toThrow(message);
      expect(() => parseConfigFile(`${text}\n`, FILE), text).not.toThrow(/secret/);
    }
  });

  it('--store postgres://… replaces a configured SQLite file; --store sqlite:… replaces postgres', () => {
    const sqlite = parseConfigFile('storage: { sqlite: { path: runs.db } }\n', FILE);
    const moved = withStore(sqlite, parseStoreUrl('postgres://db/runs?schema=s'));
    expect(storeUrlOf(moved)).toBe('postgres://db/runs?schema=s');
    const back = withStore(moved, parseStoreUrl('sqlite:/data/runs.db'));
    expect(storeUrlOf(back)).toBe('sqlite:/data/runs.db');
  });
});
