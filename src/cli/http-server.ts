// The daemon's HTTP endpoints (`runwarden monitor --http`): /metrics (Prometheus text), /healthz, /readyz.
// It listens on 127.0.0.1 unless told otherwise, and every request is bounded (header size, time to send
// headers, time to send the request, connections): a slow or malformed client gets a 4xx or a closed
// connection from Node's HTTP parser, and nothing a client sends can stop the monitor.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Registry } from 'prom-client';
import type { MonitorLogger } from '../monitor/logger.js';
import { firstLine, listenError } from './listen-error.js';

interface ListenAddress {
  host: string;
  /** 0 picks a free port. */
  port: number;
}

/** Where the monitor is in its life: `starting` until start() has loaded the runs, `stopping` once asked to. */
export type MonitorPhase = 'starting' | 'running' | 'stopping';

export interface MonitorHttpOptions extends ListenAddress {
  registry: Registry;
  phase: () => MonitorPhase;
  /** A cheap store read (the daemon reads latestSeq()): /healthz is 503 unless it answers in time. */
  probeStore: () => Promise<unknown>;
  /** Default 2000. */
  probeTimeoutMs?: number;
  logger?: MonitorLogger;
}

export interface MonitorHttpServer {
  /** http://host:port/, with the port actually bound. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

// Scrapers send a few hundred bytes of headers within milliseconds; anything far beyond is refused.
const LIMITS = {
  maxHeaderSize: 8 * 1024,
  headersTimeout: 5_000,
  requestTimeout: 10_000,
  keepAliveTimeout: 5_000,
  // How often Node checks the two timeouts above (default 30 s would let a slow client linger that long).
  connectionsCheckingInterval: 1_000,
  maxConnections: 64,
};

/** Whether only this machine can reach `host`. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Listens, or throws a RunwardenError saying in one line why the address cannot be used. */
export async function startHttpServer(options: MonitorHttpOptions): Promise<MonitorHttpServer> {
  const { registry, phase, logger } = options;
  const probeTimeoutMs = options.probeTimeoutMs ?? 2000;
  const server = createServer({
    maxHeaderSize: LIMITS.maxHeaderSize,
    headersTimeout: LIMITS.headersTimeout,
    requestTimeout: LIMITS.requestTimeout,
    keepAliveTimeout: LIMITS.keepAliveTimeout,
    connectionsCheckingInterval: LIMITS.connectionsCheckingInterval,
  });
  server.maxConnections = LIMITS.maxConnections;

  // One probe at a time: a client hammering /healthz costs one store read per round trip, not one each.
  let probing: Promise<string | undefined> | undefined;
  const probe = () =>
    (probing ??= probeStore(options.probeStore, probeTimeoutMs).finally(() => {
      probing = undefined;
    }));

  const routes: Record<string, () => Promise<Reply>> = {
    '/metrics': async () => ({ status: 200, type: registry.contentType, body: await registry.metrics() }),
    '/healthz': async () => {
      if (phase() === 'stopping') return text(503, 'unavailable: the monitor is stopping');
      const problem = await probe();
      if (problem) return text(503, `unavailable: ${problem}`);
      return text(200, phase() === 'starting' ? 'ok: loading the active runs' : 'ok');
    },
    '/readyz': async () => {
      const now = phase();
      if (now === 'running') return text(200, 'ready');
      return text(
        503,
        now === 'starting' ? 'not ready: loading the active runs' : 'not ready: the monitor is stopping',
      );
    },
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    respond(req, res).catch((error: unknown) => {
      logger?.warn({ err: redactedError(error) }, 'HTTP request failed.');
      if (!res.headersSent) send(res, text(500, `error: ${firstLine(error)}`));
      else res.destroy();
    });
  });
  // After listen, a server error (EMFILE on accept) must not become an uncaught exception.
  server.on('error', (error) => logger?.error({ err: redactedError(error) }, 'HTTP server error.'));

  async function respond(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route) return send(res, text(404, 'not found: the paths are /metrics, /healthz and /readyz'));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, {
        ...text(405, `method not allowed: ${path} answers GET and HEAD`),
        allow: 'GET, HEAD',
      });
    }
    send(res, await route());
  }

  await listen(server, options);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const hostInUrl = isIP(options.host) === 6 ? `[${options.host}]` : options.host;
  return {
    url: `http://${hostInUrl}:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections of a scraper would hold close() until they time out.
        server.closeAllConnections();
      }),
  };
}

interface Reply {
  status: number;
  type: string;
  body: string;
  allow?: string;
}

function text(status: number, line: string): Reply {
  return { status, type: 'text/plain; charset=utf-8', body: `${line}\n` };
}

function send(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string | number> = {
    'content-type': reply.type,
    'content-length': Buffer.byteLength(reply.body),
    'cache-control': 'no-store',
  };
  if (reply.allow) headers.allow = reply.allow;
  // An unread request body (a POST) must not keep the connection busy: close it after a refusal.
  if (reply.status >= 400) headers.connection = 'close';
  res.writeHead(reply.status, headers);
  res.end(reply.body);
}

/** undefined when the store answered within `timeoutMs`, else why not (one line, no credentials). */
async function probeStore(read: () => Promise<unknown>, timeoutMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`the store did not answer within ${timeoutMs} ms`), timeoutMs);
  });
  try {
    return await Promise.race([
      Promise.resolve()
        .then(read)
        .then(
          () => undefined,
          (error: unknown) => `the store did not answer: ${firstLine(error)}`,
        ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function listen(server: ReturnType<typeof createServer>, { host, port }: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.close();
      reject(
        listenError(error, host, port, {
          code: 'HTTP_LISTEN_FAILED',
          what: 'HTTP',
          otherPort: 'pick another with --http [HOST:]PORT or http.port in runwarden.yaml (0: a free one)',
        }),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function redactedError(error: unknown): { message: string; code?: string } {
  return { message: firstLine(error), code: (error as { code?: string } | undefined)?.code };
}
