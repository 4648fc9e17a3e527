// One measurement in a fresh process: `node --expose-gc worker.js <scenario> <variant> <n> [args...]`.
// Prints its result as one JSON line on stdout; everything else goes to stderr.
import { health } from './scenarios/health.js';
import { heartbeat, heartbeatWriter } from './scenarios/heartbeat.js';
import { lateness } from './scenarios/lateness.js';
import { prepareSqlite, restore } from './scenarios/restore.js';
import { dropPostgres, preparePostgres, restorePostgres } from './scenarios/restore-postgres.js';
import { track } from './scenarios/track.js';

const [scenario, variant, size, ...rest] = process.argv.slice(2);
const n = Number(size);

async function main(): Promise<unknown> {
  switch (scenario) {
    case 'track':
      return track(variant as Parameters<typeof track>[0], n, JSON.parse(rest[0] ?? '{}'));
    case 'lateness':
      return lateness(variant as Parameters<typeof lateness>[0], n, JSON.parse(rest[0] ?? '{}'));
    case 'health':
      return health(variant as Parameters<typeof health>[0], n, JSON.parse(rest[0] ?? '{}'));
    case 'restore':
      return restore(variant as Parameters<typeof restore>[0], n, rest[0] as string);
    case 'heartbeat':
      return heartbeat(variant as Parameters<typeof heartbeat>[0], n, JSON.parse(rest[0] ?? '{}'));
    case 'heartbeat-writer':
      // The store's file comes where the variant goes.
      return heartbeatWriter(variant as string, n, JSON.parse(rest[0] ?? '{}'));
    case 'prepare-sqlite':
      return prepareSqlite(n, rest[0] as string);
    // PostgreSQL: rest is [url, schema].
    case 'restore-pg':
      return restorePostgres(n, rest[0] as string, rest[1] as string);
    case 'prepare-pg':
      return preparePostgres(n, rest[0] as string, rest[1] as string);
    case 'drop-pg':
      return dropPostgres(rest[0] as string, rest[1] as string);
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    // Pending timers of a stopped baseline must not keep the worker alive.
    process.exit(0);
  },
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
