// The daemon's HTTP endpoints on a real server (127.0.0.1, port 0): a Prometheus scrape after a start
// timeout, /healthz and /readyz through the monitor's life and a closed store, refusals of bad requests and
// hostile clients, the port-in-use refusal of the real CLI. Monitors in this process run on simulated time.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfigFile } from '../src/cli/config-file.js';
import type { ConfigError } from '../src/core/errors.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { redactCredentials } from '../src/stores/store-url.js';
import { type MonitorHttpServer, type MonitorPhase, startHttpServer } from '../src/cli/http-server.js';
import { harness, SECOND } from './harness.js';
import { built, NODE, runCli, tempDir, waitFor } from './processes.js';
import { parsePrometheusText, sampleValue } from './prometheus.js';

const dir = tempDir('runwarden-http-');
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => dir.remove());

async function serve(options: {
  registry?: Registry;
  phase?: () => MonitorPhase;
  probeStore?: () => Promise<unknown>;
  probeTimeoutMs?: number;
}): Promise<MonitorHttpServer> {
  const server = await startHttpServer({
    host: '127.0.0.1',
    port: 0,
    registry: options.registry ?? new Registry(),
    phase: options.phase ?? (() => 'running'),
    probeStore: options.probeStore ?? (async () => 0),
    probeTimeoutMs: options.probeTimeoutMs,
  });
  cleanups.push(() => server.close());
  return server;
}

async function get(server: MonitorHttpServer, path: string, init?: RequestInit) {
  const response = await fetch(new URL(path, server.url), init);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

/** Sends raw bytes; resolves with everything the server wrote once it closes the connection. */
function raw(
  server: MonitorHttpServer,
  write: (socket: ReturnType<typeof connect>) => void,
): Promise<{ response: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const socket = connect(server.port, '127.0.0.1', () => write(socket));
    let response = '';
    socket.on('data', (d) => {
      response += d;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ response, ms: Date.now() - t0 }));
  });
}

describe('/metrics', () => {
  it('serves the monitor metrics as Prometheus text: a scrape after a start timeout', async () => {
    const registry = new Registry();
    const h = await harness({ config: { startTimeoutSeconds: 60 }, metrics: registry });
    cleanups.push(() => h.monitor.stop());
    const server = await serve({ registry });
    const runId = await h.launchedRun();
    await h.advance(60 * SECOND);
    expect(await h.failureReason(runId)).toBe('START_TIMEOUT');

    const { status, headers, body } = await get(server, '/metrics');
    expect(status).toBe(200);
    expect(headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const families = parsePrometheusText(body);
    for (const name of [
      'runwarden_runs',
      'runwarden_decisions_total',
      'runwarden_deadline_lateness_seconds',
      'runwarden_crash_detection_seconds',
      'runwarden_health_checks_total',
      'runwarden_health_poll_duration_seconds',
      'runwarden_effect_errors_total',
    ]) {
      expect(families.has(name), name).toBe(true);
    }
    expect(body.split('\n')).toContain('runwarden_decisions_total{action="fail",reason="START_TIMEOUT"} 1');
    expect(sampleValue(families, 'runwarden_deadline_lateness_seconds_count')).toBe(1);
    expect(body).not.toContain(runId);
  });

  it('answers HEAD without a body and ignores a query string', async () => {
    const server = await serve({});
    const head = await get(server, '/metrics', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect((await get(server, '/healthz?verbose=1')).status).toBe(200);
  });
});

describe('/healthz and /readyz', () => {
  it('follow the monitor: loading, running, stopping; /healthz is 503 once the store is closed', async () => {
    const store = new SqliteRunStore({ path: join(dir.path, 'health.db') });
    let phase: MonitorPhase = 'starting';
    const server = await serve({ phase: () => phase, probeStore: () => store.latestSeq() });
    expect(await get(server, '/healthz')).toMatchObject({
      status: 200,
      body: 'ok: loading the active runs\n',
    });
    expect(await get(server, '/readyz')).toMatchObject({
      status: 503,
      body: 'not ready: loading the active runs\n',
    });
    phase = 'running';
    expect(await get(server, '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    expect(await get(server, '/readyz')).toMatchObject({ status: 200, body: 'ready\n' });

    await store.close();
    const gone = await get(server, '/healthz');
    expect(gone.status).toBe(503);
    expect(gone.body).toMatch(
      /^unavailable: the store did not answer: The SQLite run store .*health\.db has been closed\n$/,
    );
    expect((await get(server, '/readyz')).status).toBe(200);

    phase = 'stopping';
    expect(await get(server, '/healthz')).toMatchObject({
      status: 503,
      body: 'unavailable: the monitor is stopping\n',
    });
    expect(await get(server, '/readyz')).toMatchObject({
      status: 503,
      body: 'not ready: the monitor is stopping\n',
    });
  });

  it('/healthz is 503 when the store does not answer in time, and never shows a store password', async () => {
    const hung = await serve({ probeStore: () => new Promise(() => {}), probeTimeoutMs: 100 });
    expect(await get(hung, '/healthz')).toMatchObject({
      status: 503,
      body: 'unavailable: the store did not answer within 100 ms\n',
    });
    const leaky = await serve({
      probeStore: async () => {
        throw new Error('connect ECONNREFUSED postgres://runwarden:hunter2@db:5432/runs\nat line 2');
      },
    });
    const { status, body } = await get(leaky, '/healthz');
    expect(status).toBe(503);
    expect(body).toBe(
      'unavailable: the store did not answer: connect ECONNREFUSED postgres://runwarden:***@db:5432/runs\n',
    );
  });
});

describe('refusals', () => {
  it('unknown paths 404, other methods 405 with Allow', async () => {
    const server = await serve({});
    for (const path of ['/', '/metrics/', '/admin', '/%00', '/metrics.txt']) {
      const { status, body } = await get(server, path);
      expect(status, path).toBe(404);
      expect(body).toBe('not found: the paths are /metrics, /healthz and /readyz\n');
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const { status, headers, body } = await get(server, '/metrics', { method });
      expect(status, method).toBe(405);
      expect(headers.get('allow')).toBe('GET, HEAD');
      expect(body).toBe('method not allowed: /metrics answers GET and HEAD\n');
    }
  });

  it('huge headers get 431, garbage gets 400, and the server answers the next request', async () => {
    const server = await serve({});
    const huge = await raw(server, (s) =>
      s.write(`GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`),
    );
    expect(huge.response).toMatch(/^HTTP\/1\.1 431 /);
    const garbage = await raw(server, (s) =>
      s.write('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n'),
    );
    expect(garbage.response).toMatch(/^HTTP\/1\.1 400 /);
    expect((await get(server, '/healthz')).status).toBe(200);
  });

  it('a client that sends its headers too slowly is cut off, while others are served', async () => {
    const server = await serve({});
    const slow = raw(server, (s) => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'));
    expect((await get(server, '/healthz')).status).toBe(200);
    const { response, ms } = await slow;
    // headersTimeout (5 s), checked every second.
    expect(response === '' || /^HTTP\/1\.1 408 /.test(response), response).toBe(true);
    expect(ms).toBeLessThan(8000);
    expect((await get(server, '/healthz')).status).toBe(200);
  });
});

describe('the listen address', () => {
  it('refuses a port in use with one clear line', async () => {
    const taken = await holdPort();
    await expect(
      startHttpServer({
        host: '127.0.0.1',
        port: taken.port,
        registry: new Registry(),
        phase: () => 'running',
        probeStore: async () => 0,
      }),
    ).rejects.toMatchObject({
      code: 'HTTP_LISTEN_FAILED',
      message: `Cannot serve HTTP on 127.0.0.1:${taken.port}: the port is in use; pick another with --http [HOST:]PORT or http.port in runwarden.yaml (0: a free one).`,
    });
  });
});

describe('runwarden.yaml http', () => {
  const FILE = '/etc/runwarden/runwarden.yaml';
  it('is off unless given; listens on 127.0.0.1 unless a host is given', () => {
    expect(parseConfigFile('', FILE).http).toBeUndefined();
    expect(parseConfigFile('http:\n  port: 9464\n', FILE).http).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseConfigFile('http: { host: 0.0.0.0, port: 0 }\n', FILE).http).toEqual({
      host: '0.0.0.0',
      port: 0,
    });
  });

  it('refuses a missing or bad port, a bad host and unknown keys, naming each', () => {
    const problems = (text: string) => {
      try {
        parseConfigFile(text, FILE);
      } catch (error) {
        return (error as ConfigError).issues;
      }
      throw new Error('accepted');
    };
    expect(problems('http:\n  host: localhost\n')).toEqual([
      { path: 'http.port', message: 'missing; expected a port number 0-65535 (0 picks a free port)' },
    ]);
    expect(problems('http: { port: 70000, host: "[::1]", tls: true }\n')).toEqual([
      {
        path: 'http.host',
        message:
          'expected a host name or IP address without brackets or spaces, e.g. 127.0.0.1, 0.0.0.0 or ::1, got the string "[::1]"',
      },
      { path: 'http.port', message: 'expected a port number 0-65535 (0 picks a free port), got 70000' },
      { path: 'http.tls', message: 'unknown key; known keys are host, port' },
    ]);
  });
});

describe('redactCredentials', () => {
  it('masks the password of URLs and password= settings, and nothing else', () => {
    expect(redactCredentials('postgres://bob:s3cr%40t@db:5432/runs')).toBe('postgres://bob:***@db:5432/runs');
    expect(redactCredentials('postgresql://bob:p@ss@db/runs?sslmode=require')).toBe(
      'postgresql://bob:***@db/runs?sslmode=require',
    );
    expect(redactCredentials('host=db user=bob password=hunter2 dbname=runs')).toBe(
      'host=db user=bob password=*** dbname=runs',
    );
    for (const clean of ['postgres://bob@db/runs', 'sqlite:/var/lib/runwarden/runs.db', 'db:5432']) {
      expect(redactCredentials(clean)).toBe(clean);
    }
  });
});

// --- the real CLI ----------------------------------------------------------------------------------------

async function holdPort(): Promise<{ port: number }> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return { port: (server.address() as { port: number }).port };
}

describe('runwarden monitor --http', () => {
  it('refuses a port in use before the monitor starts: one line, exit code 1, no store created', async () => {
    const taken = await holdPort();
    const db = join(dir.path, 'in-use', 'runs.db');
    const { code, stdout, stderr } = await runCli([
      'monitor',
      '--store',
      `sqlite:${db}`,
      '--http',
      `127.0.0.1:${taken.port}`,
    ]);
    expect(stderr).toBe(
      `runwarden: Cannot serve HTTP on 127.0.0.1:${taken.port}: the port is in use; pick another with --http [HOST:]PORT or http.port in runwarden.yaml (0: a free one).\n`,
    );
    expect(code).toBe(1);
    expect(stdout).not.toContain('Run monitor started');
    expect(existsSync(db)).toBe(false);
  });

  it('refuses a malformed address with exit code 2, and a bad http block in runwarden.yaml', async () => {
    const bad = await runCli(['monitor', '--store', `sqlite:${join(dir.path, 'bad.db')}`, '--http', '99999']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      `runwarden: option '--http <[host:]port>' argument '99999' is invalid. expected PORT or HOST:PORT ([::1]:PORT for IPv6; port 0-65535), got "99999"; see runwarden monitor --help\n`,
    );
    const file = join(dir.path, 'bad-http.yaml');
    writeFileSync(file, 'http:\n  host: 0.0.0.0\n  port: "9464"\n');
    const yaml = await runCli(['monitor', '--config', file]);
    expect(yaml.code).toBe(2);
    expect(yaml.stderr).toContain(
      'http.port: expected a port number 0-65535 (0 picks a free port), got the string "9464"',
    );
  });

  it('runwarden.yaml http: serves /metrics with process metrics and decisions, /readyz, on 127.0.0.1', async () => {
    const file = join(dir.path, 'serving.yaml');
    writeFileSync(
      file,
      'run_monitoring:\n  start_timeout_seconds: 1\n  poll_interval_seconds: 1\nstorage:\n  sqlite:\n    path: serving.db\nhttp:\n  port: 0\n',
    );
    const store = new SqliteRunStore({ path: join(dir.path, 'serving.db') });
    cleanups.push(() => store.close());
    const { runId } = await store.createRun({});

    const child: ChildProcess = spawn(NODE, [built('src/cli/cli.js'), 'monitor', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => child.kill('SIGKILL'));
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const running = await waitFor('the monitor to run', () =>
      output.split('\n').find((line) => line.includes('runwarden monitor running')),
    );
    const url = (JSON.parse(running) as { http: string }).http;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(await fetch(new URL('/readyz', url)).then((r) => r.status)).toBe(200);

    // The never-launched run fails once createdAt + 1 s has passed.
    const body = await waitFor('the decision in /metrics', async () => {
      const text = await fetch(new URL('/metrics', url)).then((r) => r.text());
      return text.includes('runwarden_decisions_total{action="fail",reason="START_TIMEOUT"} 1') && text;
    });
    expect((await store.getRun(runId))?.status).toBe('FAILURE');
    const families = parsePrometheusText(body);
    expect(families.get('process_cpu_user_seconds_total')?.type).toBe('counter');
    expect(families.get('nodejs_heap_size_used_bytes')?.type).toBe('gauge');
    expect(sampleValue(families, 'runwarden_health_poll_duration_seconds_count')).toBeGreaterThan(0);

    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    await expect(fetch(new URL('/healthz', url))).rejects.toThrow();
  });
});
