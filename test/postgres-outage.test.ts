// A monitor that loses its PostgreSQL database keeps its runs, makes no decision it cannot write, says so in
// the log, and carries on when the database is back. The outage is real: the monitor's store connects
// through a TCP proxy this test owns, which drops every connection and refuses new ones while cut (no other
// session's backend is touched).
import { createServer, type Server, type Socket, connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import type { MonitorLogger } from '../src/monitor/logger.js';
import { PostgresRunStore } from '../src/stores/postgres/postgres-store.js';
import { FakeLauncher } from '../src/testing/index.js';
import { TAGS } from '../src/core/types.js';
import { waitFor } from './processes.js';
import { dropSchemas, PG_URL, uniqueSchema } from './postgres.js';

interface Proxy {
  port: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

async function tcpProxy(target: URL): Promise<Proxy> {
  const sockets = new Set<Socket>();
  let cut = false;
  const server: Server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port || 5432), target.hostname);
    const pair = [client, upstream];
    const close = () => {
      for (const s of pair) {
        s.destroy();
        sockets.delete(s);
      }
    };
    for (const s of pair) {
      sockets.add(s);
      s.on('error', close);
      s.on('close', close);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

interface Line {
  level: string;
  message: string;
  bindings: Record<string, unknown>;
}

function recordingLogger(lines: Line[], bindings: Record<string, unknown> = {}): MonitorLogger {
  const at =
    (level: string) =>
    (first: object | string, message?: string): void => {
      if (typeof first === 'string') lines.push({ level, message: first, bindings });
      else lines.push({ level, message: message ?? '', bindings: { ...bindings, ...first } });
    };
  return {
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    debug: at('debug'),
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
  };
}

describe('a monitor on PostgreSQL through an outage', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('keeps its runs, decides nothing while the database is gone, logs it, and acts once it is back', async () => {
    const schema = uniqueSchema();
    cleanups.push(() => dropSchemas(schema));
    // The test's own view of the database, not through the proxy.
    const direct = new PostgresRunStore({ connectionString: PG_URL }, { schema });
    cleanups.push(() => direct.close());
    const proxy = await tcpProxy(new URL(PG_URL));
    cleanups.push(() => proxy.close());
    const viaProxy = new URL(PG_URL);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const store = new PostgresRunStore(
      { connectionString: viaProxy.toString() },
      { schema, connectTimeoutMs: 1_000 },
    );
    cleanups.push(() => store.close());

    const lines: Line[] = [];
    const launcher = new FakeLauncher({ health: 'RUNNING' });
    const monitor: RunMonitor = createRunMonitor({
      store,
      launcher,
      logger: recordingLogger(lines),
      config: {
        startTimeoutSeconds: 2,
        pollIntervalSeconds: 0.2,
        feedPollIntervalSeconds: 0.1,
        storeRetrySeconds: 0.2,
      },
    });
    cleanups.push(() => monitor.stop());
    // A run whose worker never reports: its start timeout falls due during the outage.
    await direct.createRun({ runId: 'stuck' });
    await direct.transition('stuck', { to: 'STARTING' });
    await monitor.start();

    proxy.cut();
    await waitFor(
      'the monitor to fail a decision and the feed to fail',
      () =>
        lines.some((l) => l.level === 'error' && /Reading the store feed failed/.test(l.message)) &&
        lines.some((l) => l.bindings.runId === 'stuck' && /Monitor effect failed/.test(l.message)),
      15_000,
    );
    // The decision was not written, and the feed said so once, not at every poll.
    expect((await direct.getRun('stuck'))?.status).toBe('STARTING');
    expect(lines.filter((l) => /Reading the store feed failed/.test(l.message))).toHaveLength(1);
    const failed = lines.find((l) => /Reading the store feed failed/.test(l.message))!;
    expect(String((failed.bindings.err as Error).message)).toMatch(
      /^Cannot use the PostgreSQL run store postgres:\/\/.*: the connection/,
    );

    proxy.restore();
    await waitFor(
      'the start timeout to be written',
      async () => (await direct.getRun('stuck'))?.status === 'FAILURE',
    );
    await waitFor('the feed to say the store is back', () =>
      lines.some((l) => l.level === 'info' && /The store answers again/.test(l.message)),
    );
    const run = (await direct.getRun('stuck'))!;
    expect(run.tags[TAGS.failureReason]).toBe('START_TIMEOUT');
    expect((await direct.getEvents('stuck', { types: ['RUN_FAILURE'] })).length).toBe(1);
  }, 40_000);
});
