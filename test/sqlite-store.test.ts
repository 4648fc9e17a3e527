import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DuplicateRunError, RunNotFoundError, RunwardenError } from '../src/core/errors.js';
import {
  migrateSqlite,
  SQLITE_MIGRATIONS,
  SQLITE_SCHEMA_VERSION,
  SqliteRunStore,
  StoreBusyError,
} from '../src/stores/sqlite/sqlite-store.js';
import type { RunEvent, RunStatus } from '../src/core/types.js';
import { describeRunStoreConformance, simulatedClock } from './store-conformance.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'runwarden-sqlite-'));
}

// The conformance tests each get a fresh file on disk. Creating one (WAL switch, schema) costs several fsyncs,
// so each test copies a file that was created and migrated once; fresh-file creation is tested further down.
let conformanceDir: Promise<string> | undefined;
let conformanceFiles = 0;
afterAll(async () => {
  if (conformanceDir) await rm(await conformanceDir, { recursive: true, force: true });
});

describeRunStoreConformance('SqliteRunStore conformance', async () => {
  conformanceDir ??= tempDir().then(async (dir) => {
    await new SqliteRunStore({ path: join(dir, 'template.db') }).close();
    return dir;
  });
  const dir = await conformanceDir;
  const path = join(dir, `runs-${++conformanceFiles}.db`);
  await copyFile(join(dir, 'template.db'), path);
  const clock = simulatedClock();
  const store = new SqliteRunStore({ path, clock });
  return {
    store,
    clock,
    cleanup: async () => {
      await store.close();
      await Promise.all(['', '-wal', '-shm'].map((suffix) => rm(`${path}${suffix}`, { force: true })));
    },
  };
});

/** Every event in the store, paging through readEventsAfter like a follower does. */
async function readAll(store: SqliteRunStore): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for (;;) {
    const page = await store.readEventsAfter(out.at(-1)?.seq ?? 0, 500);
    if (page.length === 0) return out;
    out.push(...page);
  }
}

function expectContiguous(seqs: number[]): void {
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i));
}

/** The schema_version rows, read with a connection of its own. */
function rawVersions(file: string): { version: number; description: string }[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT version, description FROM schema_version ORDER BY version').all() as {
      version: number;
      description: string;
    }[];
  } finally {
    db.close();
  }
}

/** The schema versions this build ships, and the first one a later release would add. */
const RELEASED_VERSIONS = SQLITE_MIGRATIONS.map((m) => m.version);
const NEXT = SQLITE_SCHEMA_VERSION + 1;

describe('SqliteRunStore specifics', () => {
  let dir: string;
  let path: string;
  const opened: SqliteRunStore[] = [];

  /** Opens a store on this test's file; afterEach closes it. */
  function open(options: { busyTimeoutMs?: number; clock?: { now(): number } } = {}): SqliteRunStore {
    const store = new SqliteRunStore({ path, ...options });
    opened.push(store);
    return store;
  }

  beforeEach(async () => {
    dir = await tempDir();
    path = join(dir, 'runs.db');
  });

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('durability', () => {
    it('keeps runs, events, tags and resume attempts across close and reopen', async () => {
      const first = open({ clock: simulatedClock(1_000) });
      // JSON.parse makes "__proto__" an own key, as a caller's parsed tags would have it.
      await first.createRun({
        runId: 'a',
        tags: JSON.parse('{"team": "data", "__proto__": "kept as a key"}'),
      });
      await first.createRun({ runId: 'b', at: 500 });
      await first.transition('a', { to: 'STARTING', at: 2_000 });
      await first.transition('a', { to: 'STARTED', at: 3_000, tags: { 'worker/pid': '42' } });
      await first.appendEvent('a', {
        type: 'ENGINE_EVENT',
        message: 'resuming',
        data: { attempt: 1, list: [null] },
      });
      expect(await first.incrementResumeAttempts('a')).toBe(1);
      expect(await first.incrementResumeAttempts('a')).toBe(2);
      await first.transition('b', { to: 'CANCELED', at: 600, message: 'never needed' });
      const runs = await first.listRuns();
      const events = await readAll(first);
      await first.close();

      const second = open();
      expect(await second.listRuns()).toEqual(runs);
      expect(await readAll(second)).toEqual(events);
      const a = (await second.getRun('a'))!;
      expect(a).toMatchObject({ status: 'STARTED', resumeAttempts: 2, startedAt: 3_000 });
      expect(Object.getPrototypeOf(a.tags)).toBe(Object.prototype);
      expect(Object.hasOwn(a.tags, '__proto__')).toBe(true);
      expect(await second.incrementResumeAttempts('a')).toBe(3);
      // New events continue the sequence; nothing is renumbered or reused.
      const next = await second.appendEvent('b', { type: 'ENGINE_EVENT', message: 'after reopen' });
      expect(next.seq).toBe(events.at(-1)!.seq + 1);
      expect(await second.latestSeq()).toBe(next.seq);
    });

    it('refuses calls after close with a clear error; close is idempotent', async () => {
      const store = open();
      await store.createRun({ runId: 'a' });
      await store.close();
      await store.close();
      await expect(store.getRun('a')).rejects.toMatchObject({
        code: 'STORE_CLOSED',
        message: expect.stringContaining(path),
      });
      await expect(store.appendEvent('a', { type: 'ENGINE_EVENT', message: 'x' })).rejects.toMatchObject({
        code: 'STORE_CLOSED',
      });
    });

    it('backs up a consistent copy while the file stays in use', async () => {
      const store = open();
      await store.createRun({ runId: 'a' });
      await store.transition('a', { to: 'STARTING' });
      const copyPath = join(dir, 'backup.db');
      await store.backup(copyPath);
      await store.appendEvent('a', { type: 'ENGINE_EVENT', message: 'after the backup' });
      const copy = new SqliteRunStore({ path: copyPath });
      opened.push(copy);
      expect(await copy.getRun('a')).toEqual(await store.getRun('a'));
      expect((await readAll(copy)).map((e) => e.type)).toEqual(['RUN_STARTING']);
    });
  });

  describe('schema and migrations', () => {
    it('creates the schema once, in WAL mode, with the indexes the monitor needs', async () => {
      open();
      open(); // a second process opening the same file applies nothing again
      expect(SQLITE_SCHEMA_VERSION).toBe(SQLITE_MIGRATIONS.length);
      expect(rawVersions(path)).toEqual(
        SQLITE_MIGRATIONS.map(({ version, description }) => ({ version, description })),
      );
      const db = new Database(path, { readonly: true });
      try {
        expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
        const indexes = db
          .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
          .pluck()
          .all();
        expect(indexes).toEqual(expect.arrayContaining(['runs_status', 'events_run']));
        // The watched-statuses query and the event tail use their indexes, not a table scan.
        const plan = (sql: string) =>
          (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[])
            .map((r) => r.detail)
            .join('; ');
        expect(
          plan(
            "SELECT * FROM runs WHERE status IN (SELECT value FROM json_each('[\"STARTED\"]')) AND run_id > '' ORDER BY run_id LIMIT 10",
          ),
        ).toContain('USING INDEX runs_status');
        expect(plan('SELECT * FROM events WHERE seq > 5 ORDER BY seq LIMIT 10')).toContain(
          'INTEGER PRIMARY KEY',
        );
        expect(plan("SELECT * FROM events WHERE run_id = 'a' ORDER BY seq")).toContain('INDEX events_run');
      } finally {
        db.close();
      }
    });

    it('upgrades a file that has no schema yet (version 0), switching it to WAL', async () => {
      const raw = new Database(path);
      raw.exec('CREATE TABLE unrelated (x)'); // someone else's table in the same file is left alone
      expect(raw.pragma('journal_mode', { simple: true })).toBe('delete');
      raw.close();
      const store = open();
      await store.createRun({ runId: 'a' });
      expect(rawVersions(path).map((r) => r.version)).toEqual(RELEASED_VERSIONS);
      const check = new Database(path, { readonly: true });
      expect(check.prepare("SELECT name FROM sqlite_master WHERE name = 'unrelated'").pluck().get()).toBe(
        'unrelated',
      );
      check.close();
    });

    it('applies newer steps to an older file in order, keeping its data, and a newer file is refused by older code', async () => {
      const store = open();
      await store.createRun({ runId: 'a', tags: { k: 'v' } });
      await store.transition('a', { to: 'STARTING' });
      await store.close();

      // What a later release would ship: the released steps unchanged, plus new ones.
      const later = [
        ...SQLITE_MIGRATIONS,
        { version: NEXT, description: 'runs.note', up: 'ALTER TABLE runs ADD COLUMN note TEXT' },
        {
          version: NEXT + 1,
          description: 'backfill runs.note',
          up: (db: Database.Database) => db.prepare("UPDATE runs SET note = 'from v3'").run(),
        },
      ];
      const raw = new Database(path);
      expect(migrateSqlite(raw, { path, migrations: later })).toBe(NEXT + 1);
      expect(raw.prepare("SELECT note FROM runs WHERE run_id = 'a'").pluck().get()).toBe('from v3');
      expect(migrateSqlite(raw, { path, migrations: later })).toBe(NEXT + 1); // idempotent
      raw.close();
      expect(rawVersions(path).map((r) => r.version)).toEqual([...RELEASED_VERSIONS, NEXT, NEXT + 1]);

      // This build only knows the released versions: it must not write into a schema it does not understand.
      const error = (() => {
        try {
          new SqliteRunStore({ path });
        } catch (e) {
          return e;
        }
      })();
      expect(error).toMatchObject({ code: 'STORE_SCHEMA_TOO_NEW' });
      expect((error as Error).message).toContain(path);
      expect((error as Error).message).toContain(`schema version ${NEXT + 1}`);
      expect((error as Error).message).toContain(`versions up to ${SQLITE_SCHEMA_VERSION}`);
    });

    it('rolls a failing step back entirely, names it, and leaves the file usable', async () => {
      open();
      const raw = new Database(path);
      const broken = [
        ...SQLITE_MIGRATIONS,
        {
          version: NEXT,
          description: 'half done',
          up: 'CREATE TABLE half_done (x); SELECT * FROM no_such_table',
        },
      ];
      expect(() => migrateSqlite(raw, { path, migrations: broken })).toThrow(
        expect.objectContaining({
          code: 'STORE_MIGRATION_FAILED',
          message: expect.stringMatching(
            new RegExp(`runs\\.db to schema version ${NEXT} \\(half done\\) failed: no such table`),
          ),
        }),
      );
      expect(raw.prepare("SELECT name FROM sqlite_master WHERE name = 'half_done'").get()).toBeUndefined();
      raw.close();
      expect(rawVersions(path).map((r) => r.version)).toEqual(RELEASED_VERSIONS);
      await expect(open().createRun({ runId: 'a' })).resolves.toMatchObject({ runId: 'a' });
    });

    it('refuses a migration list that skips a version', () => {
      const raw = new Database(':memory:');
      expect(() =>
        migrateSqlite(raw, { migrations: [{ version: 2, description: 'x', up: 'SELECT 1' }] }),
      ).toThrow(/numbered 1, 2, 3/);
      raw.close();
    });
  });

  describe('a file it cannot open: the error names the file and the cause', () => {
    /** The error opening `file` throws; a store that did open is closed by afterEach and fails the test. */
    function openError(file: string): RunwardenError {
      try {
        opened.push(new SqliteRunStore({ path: file }));
      } catch (error) {
        expect(error).toBeInstanceOf(RunwardenError);
        return error as RunwardenError;
      }
      throw new Error(`opening ${file} did not fail`);
    }

    it('a file that is not a SQLite database', async () => {
      await writeFile(path, 'this is not a database, it is a text file that is long enough to have a header');
      const error = openError(path);
      expect(error.code).toBe('STORE_OPEN_FAILED');
      expect(error.message).toBe(
        `Cannot open SQLite store ${path}: it is not a SQLite database (SQLITE_NOTADB).`,
      );
      expect(error.cause).toMatchObject({ code: 'SQLITE_NOTADB' });
    });

    it('a directory that does not exist', () => {
      const missing = join(dir, 'missing-dir', 'deeper');
      expect(openError(join(missing, 'runs.db')).message).toBe(
        `Cannot open SQLite store ${join(missing, 'runs.db')}: the directory ${missing} does not exist (ENOENT).`,
      );
    });

    // Tests run as root, where a chmod'ed directory stays writable: a path under a regular file fails for
    // everyone, and so does /sys (sysfs takes no new files: EACCES, or EROFS where it is mounted read-only).
    it('a path under a regular file', async () => {
      const file = join(dir, 'notes.txt');
      await writeFile(file, 'x');
      const target = join(file, 'sub', 'runs.db');
      expect(openError(target).message).toBe(
        `Cannot open SQLite store ${target}: ${file} is not a directory (ENOTDIR).`,
      );
    });

    it('a directory that takes no new files', () => {
      expect(openError('/sys/runwarden-test.db').message).toMatch(
        /^Cannot open SQLite store \/sys\/runwarden-test\.db: the directory \/sys is not writable \((EACCES|EROFS)\)\.$/,
      );
    });

    // As root the mode bits are not enforced, so this one only runs for other users (CI, a developer).
    it.skipIf(process.getuid?.() === 0)('a read-only directory', async () => {
      const readOnly = join(dir, 'read-only');
      await mkdir(readOnly, { mode: 0o555 });
      expect(openError(join(readOnly, 'runs.db')).message).toBe(
        `Cannot open SQLite store ${join(readOnly, 'runs.db')}: the directory ${readOnly} is not writable (EACCES).`,
      );
    });

    it('a directory given as the file', () => {
      expect(openError(dir).message).toBe(
        `Cannot open SQLite store ${dir}: it is a directory, not a database file (EISDIR).`,
      );
    });

    it('leaves no probe file behind', async () => {
      await writeFile(path, 'not a database either, and long enough to be read as a header by SQLite itself');
      openError(path);
      expect(await readdir(dir)).toEqual(['runs.db']);
    });
  });

  describe('two store instances on one file (as two processes would)', () => {
    it('see each other’s runs and events, and number events in one store-wide sequence', async () => {
      const monitor = open();
      const worker = open();
      const monitorSaw: string[] = [];
      const workerSaw: string[] = [];
      monitor.subscribe((e) => monitorSaw.push(e.message));
      worker.subscribe((e) => workerSaw.push(e.message));

      await monitor.createRun({ runId: 'r1' });
      expect(await worker.getRun('r1')).toEqual(await monitor.getRun('r1'));
      await expect(worker.createRun({ runId: 'r1' })).rejects.toBeInstanceOf(DuplicateRunError);

      await monitor.transition('r1', { to: 'STARTING', message: 'monitor launches' });
      await worker.transition('r1', { to: 'STARTED', message: 'worker starts' });
      for (let i = 0; i < 5; i++) {
        await monitor.appendEvent('r1', { type: 'ENGINE_EVENT', message: `monitor ${i}` });
        await worker.appendEvent('r1', { type: 'ENGINE_EVENT', message: `worker ${i}` });
      }
      expect(await monitor.incrementResumeAttempts('r1')).toBe(1);
      expect(await worker.incrementResumeAttempts('r1')).toBe(2);
      await worker.setTags('r1', { 'worker/host': 'h1' });

      const fromMonitor = await readAll(monitor);
      expect(await readAll(worker)).toEqual(fromMonitor);
      expectContiguous(fromMonitor.map((e) => e.seq));
      expect(fromMonitor.map((e) => e.message)).toEqual([
        'monitor launches',
        'worker starts',
        ...[0, 1, 2, 3, 4].flatMap((i) => [`monitor ${i}`, `worker ${i}`]),
      ]);
      expect(await monitor.getRun('r1')).toMatchObject({
        status: 'STARTED',
        resumeAttempts: 2,
        tags: { 'worker/host': 'h1' },
      });

      // subscribe is this instance's writes only; the other process's arrive through readEventsAfter.
      expect(monitorSaw).toEqual(
        fromMonitor.filter((e) => e.message.startsWith('monitor')).map((e) => e.message),
      );
      expect(workerSaw).toEqual(
        fromMonitor.filter((e) => e.message.startsWith('worker')).map((e) => e.message),
      );
    });

    it('compare-and-set holds across instances: the worker’s terminal report wins over a stale monitor', async () => {
      const monitor = open();
      const worker = open();
      await monitor.createRun({ runId: 'r1' });
      await monitor.transition('r1', { to: 'STARTING' });
      await worker.transition('r1', { to: 'STARTED' });
      await worker.transition('r1', { to: 'SUCCESS', message: 'done' });
      // The monitor still thinks the run is STARTING and times it out.
      expect(
        await monitor.transition('r1', {
          to: 'FAILURE',
          from: ['STARTING'],
          tags: { 'runwarden/failure_reason': 'X' },
        }),
      ).toBeUndefined();
      expect(await monitor.transition('r1', { to: 'FAILURE' })).toBeUndefined();
      expect(await monitor.getRun('r1')).toMatchObject({ status: 'SUCCESS', tags: {} });
      await expect(worker.getEvents('nope')).rejects.toBeInstanceOf(RunNotFoundError);
    });
  });

  describe('real processes', () => {
    const LOADER = fileURLToPath(new URL('./fixtures/ts-loader.mjs', import.meta.url));
    const WRITER = fileURLToPath(new URL('./fixtures/sqlite-writer.mjs', import.meta.url));

    interface Child {
      process: ChildProcessWithoutNullStreams;
      /** Resolves when the child prints this exact line. */
      line(text: string): Promise<void>;
      /** Resolves with the exit code, stdout lines and stderr once the child has exited. */
      exited: Promise<{ code: number | null; lines: string[]; stderr: string }>;
      done: boolean;
    }

    function startWriter(args: string[]): Child {
      const proc = spawn(process.execPath, ['--import', LOADER, WRITER, ...args], { stdio: 'pipe' });
      const lines: string[] = [];
      const waiting = new Map<string, () => void>();
      let stderr = '';
      proc.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      createInterface({ input: proc.stdout }).on('line', (text) => {
        lines.push(text);
        waiting.get(text)?.();
      });
      const child: Child = {
        process: proc,
        done: false,
        line: (text) =>
          lines.includes(text)
            ? Promise.resolve()
            : new Promise((resolve, reject) => {
                waiting.set(text, resolve);
                proc.once('exit', (code) =>
                  reject(new Error(`child exited (${code}) before "${text}": ${stderr}`)),
                );
              }),
        exited: new Promise((resolve) => {
          proc.once('close', (code) => {
            child.done = true;
            resolve({ code, lines, stderr });
          });
        }),
      };
      return child;
    }

    // Four processes on two cores: generous on a loaded machine.
    it(
      'three worker processes and this one write at once: nothing lost, seqs unique and gap-free, no SQLITE_BUSY',
      { timeout: 60_000 },
      async () => {
        const contested = 200;
        const workers = ['w0', 'w1', 'w2'];
        const children = workers.map((w) => startWriter(['hammer', path, w, String(contested)]));
        await Promise.all(children.map((c) => c.line('loaded')));
        // The file does not exist yet: all four processes race to create and migrate it.
        for (const c of children) c.process.stdin.write('open\n');
        const store = open();
        await Promise.all(children.map((c) => c.line('ready')));
        expect(rawVersions(path).map((r) => r.version)).toEqual(RELEASED_VERSIONS);

        const ids = Array.from({ length: contested }, (_, i) => `c-${String(i).padStart(4, '0')}`);
        for (const runId of [...ids, 'shared', 'own-parent', ...workers.map((w) => `own-${w}`)]) {
          await store.createRun({ runId });
        }
        const subscribed: RunEvent[] = [];
        store.subscribe((e) => subscribed.push(e));
        const started = performance.now();
        for (const c of children) c.process.stdin.end('go\n');

        // Meanwhile this process writes too, and follows the tail the way the monitor does.
        const followed: RunEvent[] = [];
        const follow = async () => {
          for (;;) {
            const page = await store.readEventsAfter(followed.at(-1)?.seq ?? 0, 100);
            if (page.length === 0) return;
            followed.push(...page);
          }
        };
        const parentApplied: string[] = [];
        let parentAppended = 0;
        for (let i = contested - 1; i >= 0; i--) {
          const runId = ids[i]!;
          for (const to of ['STARTING', 'STARTED', 'SUCCESS'] as RunStatus[]) {
            if (await store.transition(runId, { to, message: `parent moved ${runId} to ${to}` })) {
              parentApplied.push(`${runId}:${to}`);
            }
          }
          await store.appendEvent('own-parent', { type: 'ENGINE_EVENT', message: `parent ${i}` });
          parentAppended += 1;
          await store.incrementResumeAttempts('shared');
          await follow();
          // Let the children's pipes and exit events through.
          await new Promise((resolve) => setImmediate(resolve));
        }
        const results = await Promise.all(children.map((c) => c.exited));
        const elapsedMs = performance.now() - started;
        await follow();

        for (const r of results) {
          expect(r.code, r.stderr).toBe(0);
          // Other Node versions may print warnings; an error (SQLITE_BUSY above all) must not appear.
          expect(r.stderr).not.toMatch(/error|busy/i);
        }
        const reports = results.map(
          (r) => JSON.parse(r.lines.at(-1)!) as { applied: string[]; appended: number; increments: number },
        );

        const all = await readAll(store);
        // The follower, reading while everyone wrote, saw exactly the final log: no event skipped or repeated.
        expect(followed).toEqual(all);
        expectContiguous(all.map((e) => e.seq));
        expect(all[0]!.seq).toBe(1);

        // Every transition of every contested run was won by exactly one process.
        const applied = [...parentApplied, ...reports.flatMap((r) => r.applied)];
        expect(applied.sort()).toEqual(
          ids.flatMap((id) => [`${id}:STARTED`, `${id}:STARTING`, `${id}:SUCCESS`]).sort(),
        );
        const statusEvents = all.filter((e) => e.type !== 'ENGINE_EVENT');
        expect(statusEvents).toHaveLength(applied.length);
        for (const id of ids.slice(0, 5)) {
          expect((await store.getEvents(id)).map((e) => e.type)).toEqual([
            'RUN_STARTING',
            'RUN_START',
            'RUN_SUCCESS',
          ]);
        }
        expect(await store.listRuns({ statuses: ['SUCCESS'] })).toHaveLength(contested);

        const engine = all.filter((e) => e.type === 'ENGINE_EVENT');
        expect(engine).toHaveLength(parentAppended + reports.reduce((n, r) => n + r.appended, 0));
        for (const w of workers) {
          expect((await store.getEvents(`own-${w}`)).map((e) => e.data)).toEqual(ids.map((_, i) => ({ i })));
        }
        // Read-modify-write across processes loses no increment.
        const increments = contested + reports.reduce((n, r) => n + r.increments, 0);
        expect((await store.getRun('shared'))!.resumeAttempts).toBe(increments);

        // subscribe saw this process's writes only, in order.
        expect(subscribed).toEqual(
          all.filter((e) => e.runId === 'own-parent' || e.message.startsWith('parent')),
        );

        // The writers really ran at the same time: their events interleave rather than come in blocks.
        const writerOf = (e: RunEvent) => (e.type === 'ENGINE_EVENT' ? e.runId : e.message.split(' ')[0]);
        let switches = 0;
        for (let i = 1; i < all.length; i++) if (writerOf(all[i]!) !== writerOf(all[i - 1]!)) switches += 1;
        expect(switches).toBeGreaterThan(workers.length + 1);
        console.info(
          `sqlite hammer: ${all.length} events + ${increments} increments from 4 processes in ${elapsedMs.toFixed(0)} ms, ${switches} writer switches`,
        );
      },
    );

    it('a writer holding the lock past busyTimeoutMs gives a clear STORE_BUSY; within the timeout the write waits and succeeds', async () => {
      const patient = open(); // default busy timeout (5 s)
      const impatient = open({ busyTimeoutMs: 50 });
      await patient.createRun({ runId: 'a' });
      const holder = startWriter(['hold-lock', path, '400']);
      await holder.line('locked');

      const t0 = performance.now();
      const error = await impatient
        .appendEvent('a', { type: 'ENGINE_EVENT', message: 'x' })
        .catch((e: unknown) => e);
      const waited = performance.now() - t0;
      expect(error).toBeInstanceOf(StoreBusyError);
      expect(error).toMatchObject({ code: 'STORE_BUSY', path, busyTimeoutMs: 50 });
      expect((error as Error).message).toContain(`The SQLite run store ${path} is busy`);
      expect((error as Error).cause).toMatchObject({ code: 'SQLITE_BUSY' });
      expect(waited).toBeGreaterThanOrEqual(40);
      // WAL: readers are never blocked by the writer.
      expect(await impatient.getRun('a')).toMatchObject({ status: 'NOT_STARTED' });

      // Synchronous wait inside better-sqlite3 until the holder commits (~400 ms after it locked).
      const run = await patient.transition('a', { to: 'STARTING' });
      expect(run?.status).toBe('STARTING');
      expect((await holder.exited).code).toBe(0);
      expect((await patient.getEvents('a')).map((e) => e.type)).toEqual(['RUN_STARTING']);
      await expect(
        impatient.appendEvent('a', { type: 'ENGINE_EVENT', message: 'free again' }),
      ).resolves.toMatchObject({
        seq: 2,
      });
    });
  });
});
