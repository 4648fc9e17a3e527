import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { realClock } from '../src/core/clock.js';

const DAY = 24 * 60 * 60 * 1000;

describe('realClock', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires a short delay on time', () => {
    const fired = vi.fn();
    realClock.setTimeout(fired, 5_000);
    vi.advanceTimersByTime(4_999);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('fires a delay beyond Node’s 24.8-day limit at its time, not at once', () => {
    const fired = vi.fn();
    realClock.setTimeout(fired, 40 * DAY);
    vi.advanceTimersByTime(25 * DAY);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(15 * DAY - 1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('clears short and long timers, also after a long one has re-armed', () => {
    const short = vi.fn();
    const long = vi.fn();
    realClock.clearTimeout(realClock.setTimeout(short, 1_000));
    const id = realClock.setTimeout(long, 60 * DAY);
    vi.advanceTimersByTime(30 * DAY); // past the first link of the chain
    realClock.clearTimeout(id);
    vi.advanceTimersByTime(60 * DAY);
    expect(short).not.toHaveBeenCalled();
    expect(long).not.toHaveBeenCalled();
  });

  it('treats a negative delay as due now', () => {
    const fired = vi.fn();
    realClock.setTimeout(fired, -50);
    vi.advanceTimersByTime(0);
    expect(fired).toHaveBeenCalledTimes(1);
  });
});
