// The crash brake: when one health poll finds a large share of the workers it checked dead, or cannot
// check them, the likelier cause is the launcher, the network or a dependency, not that many crashes at
// once. Acting would kill or resume healthy work at scale, so the poll holds its crash actions instead, and
// decides again at the next poll; a hold that lasts maxHoldSeconds ends with the monitor acting after all.
// One verdict per poll over all its runs, so it lives here, beside the poll, not in the run machine.
import type { CrashBrakeConfig } from '../core/config.js';
import type { HealthResult } from '../core/types.js';

/** What one poll found, counted over the STARTED runs it checked. */
export interface PollTally {
  checked: number;
  /** FAILED or NOT_FOUND. */
  dead: number;
  /** UNKNOWN, transient, or the check threw or timed out. */
  unsure: number;
}

export type BrakeVerdict =
  | { kind: 'act' }
  | { kind: 'hold'; heldForSeconds: number }
  /** Held for maxHoldSeconds already: act, and say so. */
  | { kind: 'release'; heldForSeconds: number };

/** Whether a result would lead to a crash action (now, or as part of an unsure streak). */
export function isBadResult(result: HealthResult): boolean {
  return result.transient === true || (result.status !== 'RUNNING' && result.status !== 'SUCCESS');
}

export function tallyOf(results: readonly HealthResult[], checked: number): PollTally {
  let dead = 0;
  let unsure = 0;
  for (const result of results) {
    if (result.transient !== true && (result.status === 'FAILED' || result.status === 'NOT_FOUND')) dead += 1;
    else if (isBadResult(result)) unsure += 1;
  }
  return { checked, dead, unsure };
}

export class CrashBrake {
  /** When the current run of holding polls began; undefined while the brake is off. */
  private heldSince: number | undefined;

  constructor(
    private readonly config: CrashBrakeConfig,
    private readonly now: () => number,
  ) {}

  get enabled(): boolean {
    return this.config.ratio > 0;
  }

  /**
   * Dead and unsure count together: a launcher that fails half its checks and finds a quarter of the rest
   * dead is no more believable than one that finds three quarters dead.
   *
   * `share` is the part of the store's runs this monitor watches (its partitions): minRuns counts runs of
   * the whole store, so with several monitors each brakes at its share of it. Otherwise an outage split
   * over many monitors would leave each below minRuns, and every one of them would act.
   */
  tripped(tally: PollTally, share = 1): boolean {
    const minRuns = Math.max(1, Math.ceil(this.config.minRuns * share));
    return (
      this.enabled &&
      tally.checked >= minRuns &&
      tally.dead + tally.unsure > this.config.ratio * tally.checked
    );
  }

  judge(tally: PollTally, share = 1): BrakeVerdict {
    if (!this.tripped(tally, share)) {
      this.heldSince = undefined;
      return { kind: 'act' };
    }
    const now = this.now();
    this.heldSince ??= now;
    const heldForSeconds = (now - this.heldSince) / 1000;
    if (heldForSeconds >= this.config.maxHoldSeconds) return { kind: 'release', heldForSeconds };
    return { kind: 'hold', heldForSeconds };
  }

  /** Whether the last poll held (for a log line when the brake lets go). */
  get holding(): boolean {
    return this.heldSince !== undefined;
  }
}
