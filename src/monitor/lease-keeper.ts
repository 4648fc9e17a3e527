// The lease keeper: with a store that has lease methods, several monitors share its runs. This monitor
// renews its partition leases every leaseSeconds / 3 and tells the host which partitions it gained (load
// their runs) and lost (stop their actors without acting). Its decision writes carry the lease (fence());
// the store refuses them once another monitor took the partition over. Launcher calls are made only while
// mayAct() holds: the partition is held and a third of the lease is left by this monitor's own clock — a
// store cannot fence a launcher, so a monitor that could not renew stops acting before anyone may take over.
// With a store without lease methods this monitor owns every run, exactly as a single monitor always did.
import { RunwardenError } from '../core/errors.js';
import type { Clock, FencedWrite, Lease, LeaseToken, MonitorIdentity, RunStore } from '../core/types.js';
import { PARTITION_COUNT, partitionOf } from '../stores/contract.js';
import type { EffectTracker } from './effect-tracker.js';
import type { MonitorLogger } from './logger.js';

export interface LeaseKeeperOptions {
  store: RunStore;
  clock: Clock;
  tracker: EffectTracker;
  logger: MonitorLogger;
  identity: MonitorIdentity;
  leaseMs: number;
  /**
   * Watch every run without holding leases: a dry run's monitor, which decides but writes no decision and
   * calls no launcher, must not take partitions away from the monitors that act beside it.
   */
  watchAll?: boolean;
  /** Partitions this monitor now holds that it did not (or held at another epoch): watch their runs. */
  onGained: (partitions: number[]) => void;
  /** Partitions this monitor no longer holds: stop watching their runs, without acting on them. */
  onLost: (partitions: number[]) => void;
}

/** The monitors running in this process, so a restarted one never mistakes a sibling for its dead predecessor. */
const monitorsInThisProcess = new Set<string>();

export class LeaseKeeper {
  /** Whether the store shares runs between monitors at all. */
  readonly enabled: boolean;
  /** partition → epoch, for the partitions this monitor holds. */
  private readonly held = new Map<number, number>();
  /** partition → the epoch this monitor last held it at, kept after losing it (see token()). */
  private readonly lastEpochs = new Map<number, number>();
  /** The held leases run out then by this monitor's clock: the start of the last good renewal + leaseMs. */
  private expiresAt = Number.NEGATIVE_INFINITY;
  private renewTimer: unknown;
  private expiryTimer: unknown;
  private renewing: Promise<void> | undefined;
  private failingSince: number | undefined;
  private stopped = true;

  constructor(private readonly options: LeaseKeeperOptions) {
    const { store } = options;
    this.enabled =
      options.watchAll !== true &&
      typeof store.renewLeases === 'function' &&
      typeof store.releaseLeases === 'function' &&
      typeof store.listMonitors === 'function';
  }

  get monitorId(): string {
    return this.options.identity.monitorId;
  }

  /** The share of the store's runs this monitor watches, by partitions held (1 when it watches them all). */
  get share(): number {
    return this.enabled ? this.held.size / PARTITION_COUNT : 1;
  }

  /** Whether this monitor watches the run: it holds the run's partition (as of its last renewal). */
  owns(runId: string): boolean {
    return !this.enabled || this.held.has(partitionOf(runId));
  }

  /**
   * Whether a launcher call for the run may be made now: the partition is held, and by this monitor's own
   * clock at least a third of the lease is left. Otherwise it renews first and answers from the renewal: a
   * monitor that was paused (GC, SIGSTOP, a VM freeze) learns that another took its partitions over before
   * it calls the launcher, and one whose renewals fail does not call it at all. The third left is the time
   * the call has to begin before anyone else could take the partition.
   */
  async mayAct(runId: string): Promise<boolean> {
    if (this.mayActNow(runId)) return true;
    if (!this.owns(runId)) return false;
    await this.renewNow();
    return this.mayActNow(runId);
  }

  /** mayAct() without renewing: true when no renewal is needed to know (callers skip an await then). */
  mayActNow(runId: string): boolean {
    if (!this.enabled) return true;
    const margin = this.options.leaseMs / 3;
    return this.owns(runId) && this.options.clock.now() < this.expiresAt - margin;
  }

  /**
   * The lease a decision write about the run carries; undefined without leases. For a partition this monitor
   * lost it names the epoch it held (the store refuses it if the partition changed hands), and 0 for one it
   * never held (no holder has epoch 0): a write is refused rather than made unfenced.
   */
  private token(runId: string): LeaseToken | undefined {
    if (!this.enabled) return undefined;
    return { monitorId: this.monitorId, epoch: this.lastEpochs.get(partitionOf(runId)) ?? 0 };
  }

  /** What a decision write about the run adds to its input: `{ lease }`, or nothing without leases. */
  fence(runId: string): FencedWrite {
    const lease = this.token(runId);
    return lease ? { lease } : {};
  }

  /** An error for a launcher call the lease no longer allows (code LEASE_LOST, like the store's refusal). */
  notHeld(runId: string, call: string): RunwardenError {
    return new RunwardenError(
      'LEASE_LOST',
      `Monitor ${this.monitorId} no longer holds the lease on partition ${partitionOf(runId)} of run ${runId}: not calling the launcher's ${call}. Another monitor owns this run now.`,
    );
  }

  /** The first renewal: resolves once this monitor knows which partitions it holds. Throws if it fails. */
  async start(): Promise<void> {
    if (!this.enabled) return;
    this.stopped = false;
    monitorsInThisProcess.add(this.monitorId);
    await this.evictDeadPredecessors();
    const started = this.options.clock.now();
    const leases = await this.options.tracker.track(this.renewOnce());
    this.apply(leases, started, { announce: false });
    this.options.logger.info(
      { monitorId: this.monitorId, partitions: leases.length, leaseSeconds: this.options.leaseMs / 1000 },
      `Monitor ${this.monitorId} holds ${leases.length} of the store's partitions.`,
    );
    this.scheduleRenewal(started);
  }

  /** A clean stop: frees every partition at once, so the other monitors take them at their next renewal. */
  async stop(): Promise<void> {
    if (!this.enabled || this.stopped) return;
    this.stopped = true;
    monitorsInThisProcess.delete(this.monitorId);
    this.clearTimers();
    this.held.clear();
    this.expiresAt = Number.NEGATIVE_INFINITY;
    await this.renewing?.catch(() => undefined);
    try {
      await this.options.store.releaseLeases!(this.monitorId);
    } catch (err) {
      this.options.logger.warn(
        { err, monitorId: this.monitorId },
        `Could not release this monitor's leases; the other monitors take its partitions when they expire.`,
      );
    }
  }

  /**
   * A fenced write for the run was refused, or its lease no longer allowed a launcher call: the partition
   * is someone else's now (or may be soon). Drop it and renew, which tells what this monitor holds.
   */
  lost(runId: string, error: unknown): void {
    if (!this.enabled) return;
    const partition = partitionOf(runId);
    if (this.held.delete(partition)) {
      this.options.logger.warn(
        { monitorId: this.monitorId, partition, runId },
        `Monitor ${this.monitorId} gave up partition ${partition}: ${(error as Error).message}`,
      );
    }
    // Also when it was already given up: an actor of that partition must not stay behind to retry.
    this.options.onLost([partition]);
    void this.renewNow();
  }

  /**
   * A monitor restarted after a crash (kill -9, OOM) would otherwise wait for its predecessor's leases to
   * run out. A monitor recorded on this host whose process is gone is dead for sure: free its partitions at
   * once. Best effort: the leases run out anyway.
   */
  private async evictDeadPredecessors(): Promise<void> {
    const { store, identity, logger } = this.options;
    try {
      for (const m of await store.listMonitors!()) {
        if (m.monitorId === identity.monitorId || m.host !== identity.host || isRunning(m)) continue;
        await store.releaseLeases!(m.monitorId);
        logger.info(
          { monitorId: this.monitorId, predecessor: m.monitorId, partitions: m.partitions.length },
          `Monitor ${m.monitorId} on this host (pid ${m.pid}) is gone: taking its ${m.partitions.length} partitions without waiting for its leases to run out.`,
        );
      }
    } catch (err) {
      logger.warn(
        { err },
        'Could not look for dead monitors on this host; their leases run out by themselves.',
      );
    }
  }

  private renewOnce(): Promise<Lease[]> {
    const { store, identity, leaseMs } = this.options;
    return Promise.resolve().then(() => store.renewLeases!(identity, leaseMs));
  }

  /** Renews now (or joins the renewal in flight); resolves when it is over, whatever its outcome. */
  private renewNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (!this.renewing) {
      if (this.renewTimer !== undefined) this.options.clock.clearTimeout(this.renewTimer);
      this.renewTimer = undefined;
      this.renew();
    }
    return this.renewing ?? Promise.resolve();
  }

  private scheduleRenewal(lastStarted: number): void {
    if (this.stopped) return;
    const { clock, leaseMs } = this.options;
    const delay = Math.max(0, lastStarted + leaseMs / 3 - clock.now());
    this.renewTimer = clock.setTimeout(() => {
      this.renewTimer = undefined;
      this.renew();
    }, delay);
  }

  private renew(): void {
    const { clock, logger, tracker } = this.options;
    const started = clock.now();
    const renewing = this.renewOnce().then(
      (leases) => {
        if (this.stopped) return;
        if (this.failingSince !== undefined) {
          logger.info(
            { monitorId: this.monitorId, partitions: leases.length },
            `Lease renewal works again after ${Math.round((clock.now() - this.failingSince) / 1000)} seconds; monitor ${this.monitorId} holds ${leases.length} partitions.`,
          );
          this.failingSince = undefined;
        }
        this.apply(leases, started, { announce: true });
      },
      (err: unknown) => {
        if (this.stopped) return;
        this.failingSince ??= started;
        logger.error(
          { err, monitorId: this.monitorId },
          `Renewing monitor ${this.monitorId}'s leases failed; retrying. It stops deciding when its leases run out by its own clock.`,
        );
      },
    );
    this.renewing = tracker.track(renewing).finally(() => {
      this.renewing = undefined;
      this.scheduleRenewal(started);
    });
  }

  /** Takes in what the store says this monitor holds, and tells the host what changed. */
  private apply(leases: Lease[], started: number, { announce }: { announce: boolean }): void {
    const next = new Map(leases.map((l) => [l.partition, l.epoch]));
    const wasExpired = this.options.clock.now() >= this.expiresAt;
    const lost = [...this.held].filter(([p, epoch]) => next.get(p) !== epoch).map(([p]) => p);
    const gained = [...next].filter(([p, epoch]) => wasExpired || this.held.get(p) !== epoch).map(([p]) => p);
    this.held.clear();
    for (const [p, epoch] of next) {
      this.held.set(p, epoch);
      this.lastEpochs.set(p, epoch);
    }
    this.expiresAt = started + this.options.leaseMs;
    this.armExpiry();
    if (!announce) return;
    if (lost.length > 0) {
      this.options.logger.info(
        { monitorId: this.monitorId, partitions: lost },
        `Monitor ${this.monitorId} handed over ${lost.length} partitions; no longer watching their runs.`,
      );
      this.options.onLost(lost);
    }
    if (gained.length > 0) {
      this.options.logger.info(
        { monitorId: this.monitorId, partitions: gained },
        `Monitor ${this.monitorId} took ${gained.length} partitions; watching their runs.`,
      );
      this.options.onGained(gained);
    }
  }

  /** When the leases run out by this monitor's clock without a renewal, it stops deciding. */
  private armExpiry(): void {
    const { clock } = this.options;
    if (this.expiryTimer !== undefined) clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = clock.setTimeout(
      () => {
        this.expiryTimer = undefined;
        this.expire();
      },
      Math.max(0, this.expiresAt - clock.now()),
    );
  }

  private expire(): void {
    // Renew first: the timer may fire late (a paused process, a simulated clock moved far at once) while a
    // renewal that works is due or in flight. Only a lease that is still out after it stops the monitor.
    void this.renewNow().then(() => this.expireNow());
  }

  private expireNow(): void {
    if (this.stopped || this.held.size === 0 || this.options.clock.now() < this.expiresAt) return;
    const lost = [...this.held.keys()];
    this.held.clear();
    this.options.logger.error(
      { monitorId: this.monitorId, partitions: lost.length },
      `Monitor ${this.monitorId}'s leases ran out by its own clock without a successful renewal: it stopped deciding for ${lost.length} partitions and resumes when renewing works again.`,
    );
    this.options.onLost(lost);
  }

  private clearTimers(): void {
    const { clock } = this.options;
    if (this.renewTimer !== undefined) clock.clearTimeout(this.renewTimer);
    if (this.expiryTimer !== undefined) clock.clearTimeout(this.expiryTimer);
    this.renewTimer = undefined;
    this.expiryTimer = undefined;
  }
}

/** Whether a monitor recorded on this host still runs: its process exists, and it is not an earlier
 *  process that had this process's pid (a container restarted as pid 1). */
function isRunning(monitor: MonitorIdentity): boolean {
  if (monitor.pid === process.pid) return monitorsInThisProcess.has(monitor.monitorId);
  try {
    process.kill(monitor.pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
