// One monitor in its own process, for the several-monitor scenarios (bench/scenarios/multi-monitor.ts):
// `node monitor-process.js '{"store": URL, "monitorId": ..., "config": {...}}'`, forked with an IPC channel.
// It opens the store, runs createRunMonitor with a launcher that does nothing but report, and tells its
// parent: `ready` once started, `terminated` for every launcher terminate (the parent counts them to find
// double actions), `cpu` (its CPU time so far) when asked, `stopped` after a clean stop.
import pino from 'pino';
import { createRunMonitor } from '../src/monitor/monitor.js';
import { openStore } from '../src/stores/store-url.js';
import { FakeLauncher } from '../src/testing/index.js';
import type { RunRecord } from '../src/core/types.js';

interface MonitorProcessOptions {
  store: string;
  monitorId: string;
  config: Record<string, number>;
}

type ParentMessage = { type: 'cpu' } | { type: 'stop' };

/** The terminate calls go to the parent in batches: one IPC message per call would cost more than the call. */
class ReportingLauncher extends FakeLauncher {
  private batch: string[] = [];
  private flushing = false;

  override async terminate(run: RunRecord): Promise<boolean> {
    this.batch.push(run.runId);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush());
    }
    return super.terminate(run);
  }

  flush(): void {
    this.flushing = false;
    if (this.batch.length === 0) return;
    send({ type: 'terminated', runIds: this.batch });
    this.batch = [];
  }
}

function send(message: Record<string, unknown>): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as MonitorProcessOptions;
  const store = openStore(options.store);
  const launcher = new ReportingLauncher();
  // Warnings and errors (a lost lease, a failed renewal) go to stderr: they explain a bad figure.
  const logger = pino({ level: process.env.RUNWARDEN_BENCH_LOG ?? 'warn' }, pino.destination(2));
  const { config, monitorId } = options;
  const monitor = createRunMonitor({ store, launcher, config, monitorId, logger });
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'cpu') {
      const cpu = process.cpuUsage();
      send({ type: 'cpu', micros: cpu.user + cpu.system });
    } else if (message.type === 'stop') {
      void stop();
    }
  });
  const stop = async () => {
    await monitor.stop();
    launcher.flush();
    await store.close();
    send({ type: 'stopped' });
    process.disconnect();
  };
  await monitor.start();
  send({ type: 'ready', monitorId: monitor.monitorId });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
