// Why the PostgreSQL store could not do its work, in one line that names the store (URL with the password
// masked) and says what to do. `pg` reports a refused connection, a wrong password or a missing database
// each in its own shape; these are the ones a user can fix.
import { RunwardenError } from '../../core/errors.js';

/**
 * The store could not reach or use its database. `code` tells which: STORE_UNAVAILABLE (unreachable, or the
 * connection dropped: retrying may help), STORE_AUTH_FAILED, STORE_DATABASE_NOT_FOUND.
 */
export class StoreUnavailableError extends RunwardenError {}

/** The translated error for anything that looks like a connection problem; undefined for anything else. */
export function connectionFailure(where: string, error: unknown): StoreUnavailableError | undefined {
  const found = describeProblem(error);
  if (!found) return undefined;
  return new StoreUnavailableError(
    found.code,
    `Cannot use the PostgreSQL run store ${where}: ${found.problem}. ${found.fix}`,
    { cause: error },
  );
}

interface Problem {
  code: string;
  problem: string;
  fix: string;
}

const UNREACHABLE_FIX = 'Check that the server runs and that the host and port are right.';

function describeProblem(error: unknown): Problem | undefined {
  // `localhost` resolves to several addresses: pg (net) then reports an AggregateError of every attempt.
  const errors = error instanceof AggregateError && error.errors.length > 0 ? error.errors : [error];
  const first = errors[0] as { code?: unknown; message?: unknown } | undefined;
  const code = typeof first?.code === 'string' ? first.code : undefined;
  const message = typeof first?.message === 'string' ? first.message : String(first);
  switch (code) {
    case 'ECONNREFUSED':
      return unavailable(`the server refused the connection (${addresses(errors)}, ECONNREFUSED)`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return unavailable(`the host name could not be resolved (${code})`);
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ECONNRESET':
    case 'EPIPE':
      return unavailable(`the connection failed (${code})`);
    case '28P01':
    case '28000':
      return {
        code: 'STORE_AUTH_FAILED',
        problem: `the server refused the credentials (${firstLine(message)}, ${code})`,
        fix: 'Check the user name and password in the URL, and pg_hba.conf on the server.',
      };
    case '3D000':
      return {
        code: 'STORE_DATABASE_NOT_FOUND',
        problem: `${firstLine(message)} (3D000)`,
        fix: 'Create it (e.g. createdb), or name an existing database in the URL.',
      };
    case '57P01':
    case '57P02':
    case '57P03':
      return unavailable(`the server is shutting down or restarting (${firstLine(message)}, ${code})`);
  }
  if (code?.startsWith('08')) return unavailable(`the connection failed (${firstLine(message)}, ${code})`);
  // pg's own words when the socket closes under a query or a connect.
  if (/Connection terminated|connection timeout|Client has encountered a connection error/i.test(message)) {
    return unavailable(`the connection was lost (${firstLine(message)})`);
  }
  return undefined;
}

function unavailable(problem: string): Problem {
  return { code: 'STORE_UNAVAILABLE', problem, fix: UNREACHABLE_FIX };
}

function addresses(errors: unknown[]): string {
  const each = errors.map((e) => {
    const { address, port } = e as { address?: unknown; port?: unknown };
    return typeof address === 'string' ? `${address}:${String(port)}` : undefined;
  });
  const known = each.filter((a): a is string => a !== undefined);
  return known.length > 0 ? known.join(', ') : 'no address';
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.trim().replace(/\.$/, '');
}
