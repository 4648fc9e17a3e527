// The demo's live log (time order, colour) and the CLI's colour decision, in-process.
import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import { byTime, entryLines, paintStatus, Timeline, type TimelineEntry } from '../src/cli/demo/timeline.js';
import { colorEnabled, formatTable, painter } from '../src/cli/output.js';

const ESC = '\x1b[';
const entry = (seq: number, at: number, kind = 'ENGINE_EVENT', runId = 'demo-succeeds'): TimelineEntry => ({
  seq,
  at,
  runId,
  kind,
  message: `event ${seq}`,
});

/** A timeline that records what it prints, as "seq@at" ("seq demo@at" for a demo action). */
function recorder(holdMs: number) {
  const printed: string[] = [];
  const timeline = new Timeline(
    (e) => printed.push(`${e.seq}${e.kind === 'demo' ? ' demo' : ''}@${e.at}`),
    holdMs,
  );
  return { timeline, printed };
}

describe('Timeline', () => {
  it('prints events in (at, seq) order although the store tail delivers them in commit order', () => {
    const { timeline, printed } = recorder(500);
    // Commit order (seq) is not time order: seq 2 was taken at 1_050 but committed after seq 3 (1_020).
    for (const e of [entry(1, 1_000), entry(3, 1_020), entry(2, 1_050), entry(4, 1_020)]) timeline.add(e);
    timeline.flush();
    expect(printed).toEqual(['1@1000', '3@1020', '4@1020', '2@1050']);
  });

  it('holds each entry until it is holdMs old, so a late commit still lands in its place', () => {
    const { timeline, printed } = recorder(500);
    timeline.add(entry(1, 1_000));
    timeline.add(entry(2, 1_300));
    timeline.release(1_499);
    expect(printed).toEqual([]);
    timeline.release(1_500);
    expect(printed).toEqual(['1@1000']);
    // Committed late (seq 3) but taken before seq 2: printed before it.
    timeline.add(entry(3, 1_200));
    timeline.release(1_800);
    expect(printed).toEqual(['1@1000', '3@1200', '2@1300']);
  });

  it('never drops an entry that shows up after its hold: it prints at the next release', () => {
    const { timeline, printed } = recorder(500);
    timeline.add(entry(2, 2_000));
    timeline.release(3_000);
    timeline.add(entry(1, 1_000));
    timeline.release(3_100);
    expect(printed).toEqual(['2@2000', '1@1000']);
    timeline.flush();
    expect(printed).toHaveLength(2);
  });

  it('a demo action (added after its event, same seq) follows that event even in the same millisecond', () => {
    const { timeline, printed } = recorder(0);
    timeline.add(entry(7, 1_000));
    timeline.add(entry(7, 1_000, 'demo'));
    timeline.add(entry(6, 1_000));
    timeline.flush();
    expect(printed).toEqual(['6@1000', '7@1000', '7 demo@1000']);
    expect(byTime(entry(7, 1_000), entry(7, 1_001, 'demo'))).toBeLessThan(0);
  });
});

describe('colour', () => {
  it('only on a terminal, never with NO_COLOR, always with FORCE_COLOR (unless 0 or false)', () => {
    const tty = { isTTY: true };
    const pipe = { isTTY: false };
    expect(colorEnabled(tty, {})).toBe(true);
    expect(colorEnabled(pipe, {})).toBe(false);
    expect(colorEnabled({}, {})).toBe(false);
    expect(colorEnabled(tty, { TERM: 'dumb' })).toBe(false);
    expect(colorEnabled(tty, { NO_COLOR: '1' })).toBe(false);
    expect(colorEnabled(tty, { NO_COLOR: '' })).toBe(true);
    expect(colorEnabled(pipe, { FORCE_COLOR: '1' })).toBe(true);
    expect(colorEnabled(pipe, { FORCE_COLOR: '' })).toBe(true);
    expect(colorEnabled(tty, { FORCE_COLOR: '0' })).toBe(false);
    expect(colorEnabled(tty, { FORCE_COLOR: 'false' })).toBe(false);
    expect(colorEnabled(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' })).toBe(false);
  });

  it('colours status words and outcomes when on, and writes plain text when off', () => {
    const on = painter(true);
    const off = painter(false);
    const failure = entry(9, 3_040, 'RUN_FAILURE', 'demo-never-starts');
    failure.message = 'Run timed out.\nlog tail';
    const coloured = entryLines(failure, 0, on);
    const plain = entryLines(failure, 0, off);
    expect(coloured[0]).toContain(`${ESC}31mRUN_FAILURE${ESC}39m`);
    expect(plain).toEqual([
      '  + 3.04s  never-starts     RUN_FAILURE    Run timed out.',
      '                                           log tail',
    ]);
    expect(coloured.map((line) => stripVTControlCharacters(line))).toEqual(plain);
    expect(entryLines(entry(1, 0), 0, on)[0]).not.toContain(ESC);
    expect(paintStatus('SUCCESS', on)).toBe(`${ESC}32mSUCCESS${ESC}39m`);
    expect(paintStatus('CANCELED', on)).toBe(`${ESC}33mCANCELED${ESC}39m`);
    expect(paintStatus('SUCCESS', off)).toBe('SUCCESS');
  });

  it('formatTable aligns coloured cells by their visible width', () => {
    const paint = painter(true);
    const table = formatTable(
      ['RUN', 'STATUS', 'NOTE'],
      [
        ['a', paintStatus('SUCCESS', paint), 'x'],
        ['b', 'FAILURE', 'y'],
      ],
    );
    expect(stripVTControlCharacters(table)).toBe(
      ['RUN  STATUS   NOTE', 'a    SUCCESS  x', 'b    FAILURE  y'].join('\n'),
    );
  });
});
