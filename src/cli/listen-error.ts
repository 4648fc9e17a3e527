// One line that says why a local server (--http, --inspect) could not listen, and what to do about it.
import { isIP } from 'node:net';
import { RunwardenError } from '../core/errors.js';
import { redactCredentials } from '../stores/store-url.js';

export interface ListeningService {
  /** The error code, e.g. HTTP_LISTEN_FAILED. */
  code: string;
  /** What could not be served, e.g. "HTTP" or "the inspector". */
  what: string;
  /** How to choose another port, for a port in use. */
  otherPort: string;
}

export function listenError(
  error: unknown,
  host: string,
  port: number,
  service: ListeningService,
): RunwardenError {
  const where = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const why =
    code === 'EADDRINUSE'
      ? `the port is in use; ${service.otherPort}`
      : code === 'EACCES'
        ? 'permission denied (ports below 1024 need privileges)'
        : code === 'EADDRNOTAVAIL'
          ? `${host} is not an address of this machine`
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? `cannot resolve the host name ${host}`
            : firstLine(error);
  return new RunwardenError(service.code, `Cannot serve ${service.what} on ${where}: ${why}.`, {
    cause: error,
  });
}

/** An error's first line, without a password or a closing period. */
export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message || error.name : String(error);
  return redactCredentials(message.split('\n')[0]!.trim()).replace(/\.$/, '');
}
