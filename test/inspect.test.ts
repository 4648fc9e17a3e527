// `runwarden monitor --inspect`: the built CLI serves its actors to the Stately inspector over a real
// WebSocket on 127.0.0.1, and real `ws` clients read the feed the inspector page gets.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatelyActorEvent, StatelyInspectionEvent, StatelySnapshotEvent } from '@statelyai/inspect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startInspectorServer } from '../src/cli/inspect.js';
import type { MonitorLogger } from '../src/monitor/logger.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { built, killWorkers, NODE, runCli, tempDir, waitFor, workerCommand } from './processes.js';

const RECORD_IMPORTS = fileURLToPath(new URL('./fixtures/record-imports.mjs', import.meta.url));

const dir = tempDir('runwarden-inspect-');
const configFile = join(dir.path, 'runwarden.yaml');
writeFileSync(
  configFile,
  `run_monitoring:
  start_timeout_seconds: 60
  poll_interval_seconds: 0.5
  feed_poll_interval_seconds: 0.1
storage:
  sqlite:
    path: runs.db
launcher:
  process:
    log_dir: logs
    terminate_grace_seconds: 2
`,
);
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  if (existsSync(join(dir.path, 'runs.db'))) {
    const store = new SqliteRunStore({ path: join(dir.path, 'runs.db') });
    await killWorkers(store);
    await store.close();
  }
  dir.remove();
});

interface MonitorProcess {
  child: ChildProcess;
  output: () => string;
  /** The JSON log line whose msg starts with `prefix`. */
  logLine: (prefix: string) => Record<string, unknown> | undefined;
  exited: Promise<number | null>;
}

/** Starts `runwarden monitor ARGS` and resolves once it runs or has exited. */
async function startMonitor(
  args: string[],
  options: { recordImportsTo?: string } = {},
): Promise<MonitorProcess> {
  const preload = options.recordImportsTo ? ['--import', RECORD_IMPORTS] : [];
  const child = spawn(NODE, [...preload, built('src/cli/cli.js'), 'monitor', ...args], {
    cwd: dir.path,
    env: { ...process.env, RECORD_IMPORTS: options.recordImportsTo ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logLine = (prefix: string) =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => String(entry.msg).startsWith(prefix));
  await waitFor(
    'the monitor to run or exit',
    () => logLine('runwarden monitor running') ?? child.exitCode !== null,
  );
  return { child, output: () => output, logLine, exited };
}

async function stopMonitor(monitor: MonitorProcess): Promise<number | null> {
  monitor.child.kill('SIGTERM');
  return monitor.exited;
}

interface Viewer {
  events: StatelyInspectionEvent[];
  socket: WebSocket;
  closed: Promise<number>;
}

/** A WebSocket client of the feed; rejects with the HTTP status when the upgrade is refused. */
function connect(url: string, headers: Record<string, string> = {}): Promise<Viewer> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    const events: StatelyInspectionEvent[] = [];
    const closed = new Promise<number>((done) => socket.on('close', (code: number) => done(code)));
    socket.on('message', (data: Buffer) =>
      events.push(JSON.parse(data.toString()) as StatelyInspectionEvent),
    );
    socket.on('open', () => resolve({ events, socket, closed }));
    socket.on('unexpected-response', (_req: unknown, res: { statusCode: number }) =>
      reject(new Error(`refused with ${res.statusCode}`)),
    );
    socket.on('error', reject);
  });
}

const registrations = (viewer: Viewer) =>
  viewer.events.filter((e): e is StatelyActorEvent => e.type === '@xstate.actor');
const snapshotsOf = (viewer: Viewer, sessionId: string) =>
  viewer.events.filter(
    (e): e is StatelySnapshotEvent => e.type === '@xstate.snapshot' && e.sessionId === sessionId,
  );
const inState = (value: unknown, state: string) =>
  value === state || (typeof value === 'object' && value !== null && state in value);

interface RunSnapshot {
  status?: string;
  value?: unknown;
  context?: { run: { runId: string; status: string } };
}

describe('runwarden monitor --inspect 0', () => {
  const importsFile = join(dir.path, 'imports-inspect.txt');
  let monitor: MonitorProcess;
  let page: string;
  let feed: string;
  let port: number;

  beforeAll(async () => {
    monitor = await startMonitor(['--config', configFile, '--inspect', '0'], {
      recordImportsTo: importsFile,
    });
    const line = monitor.logLine('Stately inspector: open');
    expect(line, monitor.output()).toBeDefined();
    page = String(line!.url);
    feed = String(line!.websocket);
    port = Number(new URL(page).port);
    expect(page).toBe(`http://127.0.0.1:${port}/`);
    expect(feed).toBe(`ws://127.0.0.1:${port}/`);
  });

  afterAll(async () => {
    if (monitor) expect(await stopMonitor(monitor)).toBe(0);
  });

  const cli = (...args: string[]) =>
    runCli([args[0]!, '--config', configFile, ...args.slice(1)], { cwd: dir.path });

  it('streams the registration, events and snapshots of a run actor named after its run', async () => {
    const viewer = await connect(feed);
    const runId = 'inspected-run';
    const launched = await cli('launch', '--run-id', runId, '--', ...workerCommand('cancelable'));
    expect(launched.stderr).toBe('');

    // Its child id in the shard is a slot number; the inspector shows the system id.
    const run = await waitFor('the run actor to register', () =>
      registrations(viewer).find((e) => e.name === `run:${runId}`),
    );
    const shard = registrations(viewer).find((e) => e.sessionId === run.parentId);
    expect(shard?.name).toBe('shard-1');
    const supervisor = registrations(viewer).find((e) => e.name === 'supervisor');
    expect(supervisor?.sessionId).toBe(shard?.parentId);
    expect(run.rootId).toBe(supervisor?.sessionId);
    // The poll's child id is a number too ('0'); it is shown by what it is.
    const poll = await waitFor('a health poll to register', () =>
      registrations(viewer).find((e) => e.name === 'health-poll'),
    );
    expect(poll.parentId).toBe(supervisor?.sessionId);

    await waitFor('a snapshot of the run actor in started', () =>
      snapshotsOf(viewer, run.sessionId).find((e) => inState((e.snapshot as RunSnapshot).value, 'started')),
    );
    expect(
      viewer.events.some((e) => e.type === '@xstate.event' && e.sessionId === run.sessionId),
      'events sent to the run actor',
    ).toBe(true);

    // A viewer that connects later is shown every actor alive, parents first, in its current state.
    const late = await connect(feed);
    const lateRun = await waitFor('the late viewer to see the run actor', () =>
      registrations(late).find((e) => e.name === `run:${runId}`),
    );
    const names = registrations(late).map((e) => e.name);
    expect(names.indexOf('supervisor')).toBe(0);
    expect(names.indexOf('shard-1')).toBeLessThan(names.indexOf(`run:${runId}`));
    expect(lateRun.sessionId).toBe(run.sessionId);
    const current = lateRun.snapshot as RunSnapshot;
    expect(inState(current.value, 'started')).toBe(true);
    expect(current.context?.run).toMatchObject({ runId, status: 'STARTED' });

    expect((await cli('cancel', runId)).code).toBe(0);
    const final = await waitFor('the run actor to finish', () =>
      snapshotsOf(viewer, run.sessionId).find((e) => e.snapshot.status === 'done'),
    );
    expect((final.snapshot as RunSnapshot).context?.run).toMatchObject({ runId, status: 'CANCELED' });
    // The late viewer follows the live stream too.
    await waitFor('the late viewer to see the end', () =>
      snapshotsOf(late, run.sessionId).some((e) => e.snapshot.status === 'done'),
    );
    viewer.socket.close();
    late.socket.close();
  });

  it('serves the inspector page at / and nothing else', async () => {
    const get = async (path: string, init?: RequestInit) => {
      const response = await fetch(new URL(path, page), init);
      return {
        status: response.status,
        type: response.headers.get('content-type'),
        text: await response.text(),
      };
    };
    const home = await get('/');
    expect(home.status).toBe(200);
    expect(home.type).toMatch(/^text\/html/);
    expect(home.text).toContain('src="https://stately.ai/inspect"');
    // The page connects back to whichever address it was loaded from.
    expect(home.text).toContain("new WebSocket('ws://' + location.host + '/')");
    expect((await get('/metrics')).status).toBe(404);
    expect((await get('/', { method: 'POST', body: 'x' })).status).toBe(405);
  });

  it('refuses WebSockets from other sites, other paths and oversized messages, and keeps running', async () => {
    await expect(connect(feed, { Origin: 'https://evil.example' })).rejects.toThrow('refused with 403');
    // A site's DNS name rebound to 127.0.0.1 keeps its own name in the Origin.
    await expect(connect(feed, { Origin: `http://evil.example:${port}` })).rejects.toThrow(
      'refused with 403',
    );
    await expect(connect(`${feed}other`)).rejects.toThrow('refused with 404');
    // The page's own origin, by IP or as localhost, is let in.
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`]) {
      const viewer = await connect(feed, { Origin: origin });
      viewer.socket.close();
    }

    const hugeHeaders = await new Promise<number | undefined>((resolve, reject) => {
      const req = request(page, { headers: { 'X-Big': 'x'.repeat(64 * 1024) } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.end();
    });
    expect(hugeHeaders).toBe(431);

    // The feed is one-way: a viewer that sends more than a few KiB is cut off (1009: message too big).
    const chatty = await connect(feed);
    chatty.socket.send('x'.repeat(64 * 1024));
    expect(await chatty.closed).toBe(1009);

    const after = await connect(feed);
    await waitFor('the supervisor after all that', () =>
      registrations(after).some((e) => e.name === 'supervisor' && e.snapshot.status === 'active'),
    );
    after.socket.close();
    expect(monitor.child.exitCode).toBeNull();
  });

  it('loads @statelyai/inspect and ws (and only with --inspect: see the next test)', async () => {
    const modules = readFileSync(importsFile, 'utf8');
    expect(modules).toMatch(/\/@statelyai\/inspect\//);
    expect(modules).toMatch(/\/node_modules\/ws\//);
  });
});

describe('runwarden monitor', () => {
  it('without --inspect loads neither @statelyai/inspect nor ws', async () => {
    const importsFile = join(dir.path, 'imports-plain.txt');
    const monitor = await startMonitor(['--config', configFile], { recordImportsTo: importsFile });
    expect(monitor.logLine('runwarden monitor running'), monitor.output()).toBeDefined();
    expect(await stopMonitor(monitor)).toBe(0);
    const modules = readFileSync(importsFile, 'utf8');
    expect(modules, 'the recorder saw the monitor load XState').toMatch(/\/node_modules\/xstate\//);
    expect(modules).not.toMatch(/@statelyai|\/node_modules\/ws\//);
  });

  it('refuses an --inspect port in use with one line and exit code 1, before opening the store', async () => {
    const holder = createTcpServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as AddressInfo;
    try {
      const configInOtherDir = join(dir.path, 'port-in-use.yaml');
      writeFileSync(configInOtherDir, 'storage:\n  sqlite:\n    path: port-in-use/runs.db\n');
      const result = await runCli(['monitor', '--config', configInOtherDir, '--inspect', String(port)]);
      expect(result.code).toBe(1);
      expect(result.stdout).not.toContain('runwarden monitor running');
      expect(result.stderr).toBe(
        `runwarden: Cannot serve the inspector on 127.0.0.1:${port}: the port is in use; pick another with --inspect PORT or HOST:PORT.\n`,
      );
      expect(existsSync(join(dir.path, 'port-in-use')), 'the store was not created').toBe(false);
    } finally {
      holder.close();
    }
  });

  it('--inspect without a value listens on 127.0.0.1:8899', async () => {
    const monitor = await startMonitor(['--config', configFile, '--inspect']);
    if (monitor.child.exitCode === null) {
      expect(monitor.logLine('Stately inspector: open')?.url).toBe('http://127.0.0.1:8899/');
      expect(await stopMonitor(monitor)).toBe(0);
    } else {
      // Something else on this machine holds 8899: the refusal names the default address just the same.
      expect(monitor.output()).toContain('Cannot serve the inspector on 127.0.0.1:8899: the port is in use');
    }
  });

  it('refuses a malformed --inspect address as a usage error', async () => {
    for (const value of ['nope', '70000', '::1:8899', 'localhost:']) {
      const result = await runCli(['monitor', '--config', configFile, '--inspect', value]);
      expect(result.code, value).toBe(2);
      expect(result.stderr, value).toContain(
        `option '--inspect [port]' argument '${value}' is invalid. expected PORT or HOST:PORT`,
      );
    }
  });
});

describe('the inspector server', () => {
  /** A logger that keeps the warnings. */
  function recordingLogger(): MonitorLogger & { warnings: string[] } {
    const warnings: string[] = [];
    const logger: MonitorLogger & { warnings: string[] } = {
      warnings,
      info: () => {},
      debug: () => {},
      error: () => {},
      warn: (bindings: object | string, message?: string) => void warnings.push(message ?? String(bindings)),
      child: () => logger,
    };
    return logger;
  }

  it('refuses viewers beyond maxViewers with 503 until one leaves', async () => {
    const server = await startInspectorServer(
      { host: '127.0.0.1', port: 0 },
      { logger: recordingLogger(), maxViewers: 1 },
    );
    const feed = server.url.replace(/^http/, 'ws');
    try {
      const first = await connect(feed);
      await expect(connect(feed)).rejects.toThrow('refused with 503');
      first.socket.close();
      await first.closed;
      const next = await waitFor('a place to free up', () => connect(feed).catch(() => undefined));
      next.socket.close();
    } finally {
      await server.close();
    }
  });

  it('disconnects a viewer that stops reading, and keeps serving the others', async () => {
    const logger = recordingLogger();
    const server = await startInspectorServer(
      { host: '127.0.0.1', port: 0 },
      { logger, maxUnsentBytes: 256 * 1024 },
    );
    // A raw client: the WebSocket handshake, then it never reads again.
    const stuck = tcpConnect(server.address.port, '127.0.0.1');
    stuck.on('error', () => {});
    stuck.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const handshake = await new Promise<string>((resolve) =>
      stuck.once('data', (chunk) => {
        stuck.pause();
        resolve(chunk.toString());
      }),
    );
    expect(handshake).toMatch(/^HTTP\/1.1 101/);
    const reader = await connect(server.url.replace(/^http/, 'ws'));
    const big = { type: 'big', payload: 'x'.repeat(64 * 1024) };
    const actorRef = { sessionId: 'x:1', send: () => {}, getSnapshot: () => undefined };
    try {
      await waitFor('the stuck viewer to be disconnected', () => {
        for (let i = 0; i < 20; i++) {
          server.inspect.next?.({
            type: '@xstate.event',
            rootId: 'x:0',
            actorRef,
            sourceRef: undefined,
            event: big,
          });
        }
        return logger.warnings.find((w) => w.includes('not reading'));
      });
      // The viewer that reads keeps receiving.
      const received = reader.events.length;
      server.inspect.next?.({
        type: '@xstate.event',
        rootId: 'x:0',
        actorRef,
        sourceRef: undefined,
        event: { type: 'after' },
      });
      await waitFor('the reader to get the next event', () =>
        reader.events.slice(received).some((e) => e.type === '@xstate.event' && e.event.type === 'after'),
      );
    } finally {
      stuck.destroy();
      reader.socket.close();
      await server.close();
    }
  });
});
