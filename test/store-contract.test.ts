// The shared store rules (src/stores/contract.ts) as pure functions, without a store: what a new backend
// relies on when it writes only `plan.record` and `plan.event`. test/store-conformance.ts checks the stores.
import { describe, expect, it } from 'vitest';
import { InvalidTransitionError } from '../src/core/errors.js';
import { type RunRecord, TAGS } from '../src/core/types.js';
import { isMaxRuntimeStop, Listeners, planCreate, planTransition } from '../src/stores/contract.js';

function started(tags: Record<string, string> = {}): RunRecord {
  return { ...planCreate({ runId: 'r', tags, at: 0 }, 0), status: 'STARTED', launchedAt: 5, startedAt: 10 };
}

describe('planTransition', () => {
  it('plans the whole new record and the status event, leaving the current record alone', () => {
    const current = started({ a: '1' });
    const frozen = structuredClone(current);
    const plan = planTransition(current, { to: 'CANCELING', tags: { b: '2' } }, 100);
    expect(plan).toEqual({
      record: { ...frozen, status: 'CANCELING', updatedAt: 100, cancelingAt: 100, tags: { a: '1', b: '2' } },
      event: { type: 'RUN_CANCELING', message: 'Run moved to CANCELING.', at: 100 },
    });
    expect(current).toEqual(frozen);
  });

  it('returns undefined for a compare-and-set that does not apply, and throws for a move nothing allows', () => {
    expect(planTransition(started(), { to: 'FAILURE', from: ['STARTING'] }, 1)).toBeUndefined();
    expect(() => planTransition(started(), { to: 'STARTED', from: ['STARTED'] }, 1)).toThrow(
      InvalidTransitionError,
    );
  });

  it('refuses SUCCESS and CANCELED from a maximum-runtime stop, not FAILURE', () => {
    const stop = planTransition(
      started(),
      { to: 'CANCELING', tags: { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' } },
      1,
    )!.record;
    expect(isMaxRuntimeStop(stop)).toBe(true);
    expect(planTransition(stop, { to: 'SUCCESS' }, 2)).toBeUndefined();
    expect(planTransition(stop, { to: 'CANCELED', from: ['CANCELING'] }, 2)).toBeUndefined();
    expect(planTransition(stop, { to: 'FAILURE' }, 2)?.record.status).toBe('FAILURE');
    const userCancel = { ...stop, tags: { [TAGS.cancelReason]: 'USER_REQUEST' } };
    expect(isMaxRuntimeStop(userCancel)).toBe(false);
    expect(planTransition(userCancel, { to: 'SUCCESS' }, 2)?.record.status).toBe('SUCCESS');
  });
});

describe('Listeners', () => {
  it('gives each listener its own copy and reports a throwing one without stopping the rest', () => {
    const errors: unknown[] = [];
    const listeners = new Listeners((error) => errors.push(error));
    const seen: unknown[] = [];
    listeners.add(() => {
      throw new Error('bug');
    });
    listeners.add((event) => seen.push(event));
    listeners.add((event) => seen.push(event));
    let copies = 0;
    listeners.deliver(() => ({ runId: 'r', seq: ++copies, at: 0, type: 'ENGINE_EVENT', message: 'm' }));
    // Copy 1 went to the throwing listener and copy 2 to the error hook.
    expect(seen.map((e) => (e as { seq: number }).seq)).toEqual([3, 4]);
    expect(errors).toEqual([new Error('bug')]);
  });
});
