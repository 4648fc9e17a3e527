// The run worker `runwarden demo` launches, one process per run: `node worker.js <scenario>`. It uses the
// worker SDK exactly as a user's worker would. What it prints goes to the run's log file.
import { setTimeout as sleep } from 'node:timers/promises';
import { type RunWorker, startRunWorker } from '../../worker/worker.js';

const scenario = process.argv[2] ?? '';
const say = (message: string) => console.log(`[${scenario} pid ${process.pid}] ${message}`);

/** A step that takes `ms` unless the run is canceled first. */
const work = (run: RunWorker, ms: number) => sleep(ms, undefined, { signal: run.signal });

/** The first two steps of the demo's pipeline; a resumed worker gets their recorded results. */
async function extractAndTransform(run: RunWorker): Promise<number> {
  const rows = await run.step('extract', async () => {
    await work(run, 150);
    return [3, 5, 8];
  });
  return run.step('transform', async () => {
    await work(run, 150);
    return rows.reduce((a, b) => a + b, 0);
  });
}

switch (scenario) {
  case 'succeeds': {
    const run = await startRunWorker();
    const total = await extractAndTransform(run);
    await run.step('load', () => work(run, 150));
    say(`loaded a total of ${total}`);
    await run.succeed();
    break;
  }

  case 'never-starts': {
    // Stuck before it could report STARTED (a hung import, a lock, a missing GPU): the start timeout ends it.
    say('loading a very large model… (this never finishes)');
    setInterval(() => {}, 1000);
    break;
  }

  case 'crash-resume': {
    const run = await startRunWorker();
    if (run.resumed) say(`resumed (attempt ${run.attempt}): finished steps are skipped`);
    const total = await extractAndTransform(run);
    await run.step('load', async ({ attempt }) => {
      if (attempt === 0) {
        say('loading… (the demo kills this process with SIGKILL now, as an OOM killer would)');
        await work(run, 60_000);
      }
      await work(run, 150);
      say(`loaded a total of ${total}`);
    });
    await run.succeed();
    break;
  }

  case 'max-runtime': {
    // Runs longer than its runwarden/max_runtime tag allows; on SIGTERM the SDK sees the monitor owns the
    // outcome (MAX_RUNTIME_EXCEEDED) and just exits.
    const run = await startRunWorker();
    for (let batch = 1; batch <= 100; batch++) await run.step(`batch-${batch}`, () => work(run, 400));
    await run.succeed();
    break;
  }

  case 'ignores-sigterm': {
    // A worker that handles SIGTERM itself, badly: it ignores it. The launcher escalates to SIGKILL after its
    // grace period, and the monitor marks the run CANCELED once the cancel timeout passes.
    const run = await startRunWorker({ handleSignals: false });
    process.on('SIGTERM', () => say('got SIGTERM; ignoring it'));
    await run.step('work', () => sleep(120_000));
    await run.succeed();
    break;
  }

  default:
    console.error(`unknown demo scenario ${JSON.stringify(scenario)}`);
    process.exit(2);
}
