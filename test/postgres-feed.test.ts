// The PostgreSQL change feed cannot skip: several writer processes commit concurrently while a tail reader
// follows "seq > last seen" as fast as it can; the reader must see every seq from 1 to the last exactly
// once, in order, and exactly the events the writers say they wrote.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunEvent } from '../src/core/types.js';
import { PostgresRunStore } from '../src/stores/postgres/postgres-store.js';
import { NODE } from './processes.js';
import { dropSchemas, PG_URL, uniqueSchema } from './postgres.js';

const LOADER = fileURLToPath(new URL('./fixtures/ts-loader.mjs', import.meta.url));
const WRITER = fileURLToPath(new URL('./fixtures/postgres-writer.mjs', import.meta.url));

interface Writer {
  go(): void;
  done: Promise<{ writer: string; seqs: number[] }>;
  ready: Promise<void>;
}

function startWriter(schema: string, name: string, writes: number, lanes: number): Writer {
  const child = spawn(
    NODE,
    ['--import', LOADER, WRITER, 'hammer', PG_URL, schema, name, String(writes), String(lanes)],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const out = createInterface({ input: child.stdout });
  let ready!: () => void;
  const readyP = new Promise<void>((resolve) => (ready = resolve));
  const done = new Promise<{ writer: string; seqs: number[] }>((resolve, reject) => {
    let result: { writer: string; seqs: number[] } | undefined;
    out.on('line', (line) => {
      if (line === 'ready') ready();
      else if (line.startsWith('{')) result = JSON.parse(line);
    });
    child.once('exit', (code) => {
      if (code === 0 && result) resolve(result);
      else reject(new Error(`writer ${name} exited ${code}: ${stderr}`));
    });
  });
  done.catch(() => ready());
  return { go: () => child.stdin.write('go\n'), done, ready: readyP };
}

describe('PostgreSQL change feed', () => {
  const schemas: string[] = [];
  afterEach(async () => {
    await dropSchemas(...schemas.splice(0));
  });

  it('several writer processes, one tail reader: no seq gap, no event skipped, none twice', async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const reader = new PostgresRunStore({ connectionString: PG_URL }, { schema });
    try {
      expect(await reader.latestSeq()).toBe(0);
      const WRITERS = 4;
      const WRITES = 200;
      const writers = Array.from({ length: WRITERS }, (_, i) => startWriter(schema, `w${i}`, WRITES, 4));
      await Promise.all(writers.map((w) => w.ready));

      // The tail reader: as fast as it can while the writers run, woken by NOTIFY as well.
      const seen: RunEvent[] = [];
      let wakes = 0;
      const stopWakes = reader.onRemoteWrite(() => wakes++);
      let writing = true;
      const follow = (async () => {
        for (;;) {
          const stillWriting = writing;
          const page = await reader.readEventsAfter(seen.at(-1)?.seq ?? 0, 50);
          seen.push(...page);
          if (page.length === 0 && !stillWriting) return;
        }
      })();
      for (const w of writers) w.go();
      const results = await Promise.all(writers.map((w) => w.done));
      writing = false;
      await follow;
      stopWakes();

      const total = WRITERS * WRITES;
      const written = results.flatMap((r) => r.seqs).sort((a, b) => a - b);
      expect(written).toHaveLength(total);
      // Gap-free: 1..total, each exactly once, and the tail saw them all in that order.
      expect(seen.map((e) => e.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      expect(written).toEqual(seen.map((e) => e.seq));
      expect(await reader.latestSeq()).toBe(total);
      expect(wakes).toBeGreaterThan(0);
    } finally {
      await reader.close();
    }
  }, 120_000);

  it('onRemoteWrite wakes a follower within milliseconds of another connection’s commit', async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const follower = new PostgresRunStore({ connectionString: PG_URL }, { schema });
    const writer = new PostgresRunStore({ connectionString: PG_URL }, { schema });
    try {
      await writer.createRun({ runId: 'r' });
      let wakes = 0;
      let onWake = () => {};
      const stop = follower.onRemoteWrite(() => {
        wakes += 1;
        onWake();
      });
      const nextWake = () => new Promise<void>((resolve) => (onWake = resolve));
      // The first wake says LISTEN is in place (a follower catches up then); after that, commits wake it.
      if (wakes === 0) await nextWake();
      const woken = nextWake();
      const started = performance.now();
      await writer.transition('r', { to: 'STARTING' });
      await woken;
      const ms = performance.now() - started;
      expect(ms).toBeLessThan(1_000);
      const events = await follower.readEventsAfter(0, 10);
      expect(events.map((e) => e.type)).toEqual(['RUN_STARTING']);

      // The follower's own write does not wake it (subscribe has it at once). Notifications arrive in commit
      // order, so once the second remote write has woken it, every earlier one has been handled.
      const before = wakes;
      await follower.appendEvent('r', { type: 'ENGINE_EVENT', message: 'own' });
      const first = nextWake();
      await writer.appendEvent('r', { type: 'ENGINE_EVENT', message: 'remote 1' });
      await first;
      const second = nextWake();
      await writer.appendEvent('r', { type: 'ENGINE_EVENT', message: 'remote 2' });
      await second;
      expect(wakes - before).toBe(2);
      stop();
    } finally {
      await follower.close();
      await writer.close();
    }
  });
});
