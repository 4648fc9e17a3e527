// `runwarden monitor --inspect`: serves the monitor's actors (supervisor, shards, runs, their effects) to the
// Stately inspector over a WebSocket on this machine, so nothing goes through stately.ai's servers.
//
// @statelyai/inspect's createInspector turns XState's inspection events into the inspector's protocol; this
// file serves them. Not @statelyai/inspect/server: it listens on every interface, throws a port in use from
// an event handler (the process dies), cannot say which port it bound, opens a browser, and relays whatever
// one client sends to every other one. Both packages are imported only here, and this module only when
// --inspect is given.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { StatelyInspectionEvent } from '@statelyai/inspect';
import type { WebSocket } from 'ws';
import type { AnyActorRef, InspectionEvent, Observer } from 'xstate';
import { listenError } from './listen-error.js';
import type { MonitorLogger } from '../monitor/logger.js';

/** The app the page at `/` embeds; the monitor's events reach it inside the browser (postMessage). */
const INSPECTOR_APP = 'https://stately.ai/inspect';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface InspectorServerOptions {
  logger: MonitorLogger;
  /** A viewer with more than this many bytes not yet sent is disconnected, so it cannot fill the memory. */
  maxUnsentBytes?: number;
  /** Viewers connected at once; more are refused with 503. */
  maxViewers?: number;
}

export interface InspectorServer {
  /** For `createRunMonitor({ inspect })`. */
  inspect: Observer<InspectionEvent>;
  /** The page that embeds the inspector, e.g. http://127.0.0.1:8899/ (the WebSocket is at ws://…/ too). */
  url: string;
  /** Where it listens (port 0 given: the port the system picked). */
  address: ListenAddress;
  close(): Promise<void>;
}

/** The inspection events the inspector's protocol has (createInspector drops microsteps and actions). */
const FORWARDED = new Set<InspectionEvent['type']>(['@xstate.actor', '@xstate.event', '@xstate.snapshot']);

/**
 * Listens on `address` (a port in use is a RunwardenError, before anything is served) and returns the
 * observer to pass to the monitor.
 */
export async function startInspectorServer(
  address: ListenAddress,
  options: InspectorServerOptions,
): Promise<InspectorServer> {
  const [{ createInspector }, { WebSocket, WebSocketServer }] = await Promise.all([
    import('@statelyai/inspect'),
    import('ws'),
  ]);
  const { logger } = options;
  const maxUnsentBytes = options.maxUnsentBytes ?? 16 * 1024 * 1024;
  const maxViewers = options.maxViewers ?? 16;

  const viewers = new Set<WebSocket>();
  /** The supervisor: a viewer that connects late is shown every actor alive, walking down from it. */
  let root: AnyActorRef | undefined;

  const deliver = (targets: Iterable<WebSocket>, event: StatelyInspectionEvent) => {
    const text = toJson(event);
    if (text === undefined) return;
    for (const viewer of targets) {
      if (viewer.readyState !== WebSocket.OPEN) continue;
      if (viewer.bufferedAmount > maxUnsentBytes) {
        logger.warn(
          { unsentBytes: viewer.bufferedAmount },
          'Inspector viewer disconnected: it is not reading the events it is sent.',
        );
        viewer.terminate();
        viewers.delete(viewer);
        continue;
      }
      viewer.send(text);
    }
  };

  const live = createInspector({ send: (event) => deliver(viewers, event) });
  const inspect: Observer<InspectionEvent> = {
    next(event) {
      if (event.type === '@xstate.actor' && event.rootId === event.actorRef.sessionId) {
        root = event.actorRef as AnyActorRef;
      }
      // Nobody watching: no conversion, no timer (createInspector defers each event with setTimeout).
      if (viewers.size === 0 || !FORWARDED.has(event.type)) return;
      live.inspect.next?.(
        event.type === '@xstate.actor' ? { ...event, actorRef: named(event.actorRef as AnyActorRef) } : event,
      );
    },
  };

  /** Registers every actor alive, parents first, with its current snapshot, for one new viewer. */
  const replay = (viewer: WebSocket) => {
    const current = root;
    if (!current || current.getSnapshot()?.status !== 'active') return;
    const one = createInspector({ send: (event) => deliver([viewer], event) });
    const rootId = current.sessionId;
    const register = (actorRef: AnyActorRef) => {
      one.inspect.next?.({ type: '@xstate.actor', actorRef: named(actorRef), rootId });
      const children = (actorRef.getSnapshot() as { children?: Record<string, AnyActorRef> }).children;
      for (const child of Object.values(children ?? {})) register(child);
    };
    register(current);
  };

  const wss = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: 4096 });
  const server = createServer({ headersTimeout: 10_000, requestTimeout: 10_000 }, servePage);
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refusal = refuseUpgrade(
      request,
      { host: address.host, port: boundPort() },
      viewers.size >= maxViewers,
    );
    if (refusal) {
      socket.on('error', () => {});
      socket.end(`HTTP/1.1 ${refusal}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(request, socket, head, (viewer) => {
      const from = `${request.socket.remoteAddress}:${request.socket.remotePort}`;
      viewers.add(viewer);
      // The feed is one-way; a viewer's messages are ignored (and ws closes one that sends over 4 KiB).
      viewer.on('error', (err: Error) => logger.debug({ err, viewer: from }, 'Inspector viewer error.'));
      viewer.on('close', () => {
        viewers.delete(viewer);
        logger.info({ viewer: from }, 'Inspector viewer disconnected.');
      });
      logger.info({ viewer: from }, 'Inspector viewer connected.');
      replay(viewer);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    throw listenError(error, address.host, address.port, {
      code: 'INSPECT_LISTEN_FAILED',
      what: 'the inspector',
      otherPort: 'pick another with --inspect PORT or HOST:PORT',
    });
  });
  server.on('error', (err) => logger.error({ err }, 'Inspector server error.'));

  function boundPort(): number {
    return (server.address() as AddressInfo).port;
  }
  const bound = server.address() as AddressInfo;
  const url = `http://${hostForUrl(bound.address)}:${bound.port}/`;
  logger.info(
    { url, websocket: url.replace(/^http/, 'ws') },
    `Stately inspector: open ${url} in a browser (the events stay on this machine).`,
  );

  return {
    inspect,
    url,
    address: { host: bound.address, port: bound.port },
    async close() {
      for (const viewer of viewers) viewer.terminate();
      viewers.clear();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * The inspector names an actor by its id, which for runs, shards and the health poll is a number (a run's
 * slot in its shard, a shard's in the supervisor; docs/performance.md says why): show a run's system id
 * (`run:<runId>`), `shard-<n>` and `health-poll` instead. Read when the event is converted, after XState has
 * set the system id.
 */
function named(actorRef: AnyActorRef): AnyActorRef {
  return Object.create(actorRef, {
    id: { get: () => displayName(actorRef), enumerable: true },
  }) as AnyActorRef;
}

function displayName(actorRef: AnyActorRef): string {
  const { systemId, src } = actorRef as AnyActorRef & { systemId?: string; src?: unknown };
  if (systemId !== undefined) return systemId;
  if (src === 'shard') return `shard-${actorRef.id}`;
  if (src === 'pollHealth') return 'health-poll';
  return actorRef.id;
}

function servePage(request: IncomingMessage, response: ServerResponse): void {
  const path = (request.url ?? '/').split('?')[0];
  if (path !== '/') return plain(response, 404, 'Not found: the inspector page is at /.');
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('Allow', 'GET, HEAD');
    return plain(response, 405, `Method ${request.method} not allowed: GET the page.`);
  }
  response.writeHead(200, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  response.end(request.method === 'HEAD' ? undefined : PAGE);
}

function plain(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  response.end(`${text}\n`);
}

/**
 * Why a WebSocket upgrade is refused (a status line), or undefined. Browsers let any web page open a
 * WebSocket to 127.0.0.1, so a browser's connection must come from the page served here: its Origin names
 * this port and localhost, an IP address or the host given to --inspect (any other name could be a site's,
 * rebound to this machine by its DNS). Programs send no Origin.
 */
function refuseUpgrade(
  request: IncomingMessage,
  listening: ListenAddress,
  full: boolean,
): string | undefined {
  if ((request.url ?? '/').split('?')[0] !== '/') return '404 Not Found';
  const origin = request.headers.origin;
  if (origin !== undefined && !isOwnOrigin(origin, listening)) return '403 Forbidden';
  if (full) return '503 Service Unavailable';
  return undefined;
}

function isOwnOrigin(origin: string, listening: ListenAddress): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const known = host === 'localhost' || isIP(host) !== 0 || host === listening.host.toLowerCase();
  return url.protocol === 'http:' && Number(url.port || 80) === listening.port && known;
}

function hostForUrl(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** JSON for the wire: errors keep their message, a cycle does not throw; undefined if it cannot be written. */
function toJson(event: StatelyInspectionEvent): string | undefined {
  const errors = (_key: string, value: unknown) =>
    value instanceof Error ? { name: value.name, message: value.message } : value;
  try {
    return JSON.stringify(event, errors);
  } catch {
    const seen = new WeakSet<object>();
    try {
      return JSON.stringify(event, (key, value: unknown) => {
        if (typeof value === 'bigint') return value.toString();
        if (typeof value === 'object' && value !== null) {
          if (seen.has(value)) return '[Circular]';
          seen.add(value);
        }
        return errors(key, value);
      });
    } catch {
      return undefined;
    }
  }
}

// The page at `/`: the inspector app in a frame, fed by this page from the WebSocket. The app announces
// itself with '@statelyai.connected' (as @statelyai/inspect's browser receiver does); events are held until
// then and sent only to the origin that announced itself.
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Runwarden · Stately inspector</title>
<style>
  html, body { height: 100%; margin: 0; }
  body { display: flex; flex-direction: column; font: 13px system-ui, sans-serif; }
  #status { padding: 4px 8px; background: #f4f4f5; color: #27272a; }
  iframe { flex: 1; border: 0; }
</style>
</head>
<body>
<div id="status">Connecting to the Runwarden monitor…</div>
<iframe id="inspector" title="Stately inspector" src="${INSPECTOR_APP}"></iframe>
<script>
  const frame = document.getElementById('inspector');
  const status = document.getElementById('status');
  const held = [];
  let app;
  window.addEventListener('message', (message) => {
    if (message.source !== frame.contentWindow || message.data?.type !== '@statelyai.connected') return;
    app = message.origin;
    for (const event of held.splice(0)) frame.contentWindow.postMessage(event, app);
  });
  setTimeout(() => {
    if (!app) status.textContent += ' The inspector app has not loaded: it comes from ${INSPECTOR_APP}, which this browser cannot reach.';
  }, 15000);
  const socket = new WebSocket('ws://' + location.host + '/');
  socket.onopen = () => (status.textContent = 'Connected to the Runwarden monitor at ' + location.host + '.');
  socket.onclose = () => (status.textContent = 'Disconnected from the monitor (stopped?): reload this page to reconnect.');
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (app) frame.contentWindow.postMessage(event, app);
    else if (held.push(event) > 50000) held.shift();
  };
</script>
</body>
</html>
`;
