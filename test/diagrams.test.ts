// docs/machines.md is generated from the machines; these tests regenerate it in memory so it cannot drift,
// and check that what is generated is complete and is Mermaid that renders.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getStateNodes } from 'xstate/graph';
import { runTiming } from '../machines/run.machine.js';
import {
  MACHINES,
  MACHINES_DOC_PATH,
  mermaidFor,
  mermaidId,
  packageRoot,
  renderMachinesDoc,
  transitionTable,
} from '../scripts/diagrams.js';

const root = packageRoot();

describe('docs/machines.md', () => {
  it('is up to date with machines/ (run `npm run docs:diagrams` after changing a machine)', () => {
    const onDisk = readFileSync(join(root, MACHINES_DOC_PATH), 'utf8');
    expect(onDisk, `${MACHINES_DOC_PATH} is stale: run \`npm run docs:diagrams\``).toBe(renderMachinesDoc());
  });

  it('is generated the same way every time', () => {
    expect(renderMachinesDoc()).toBe(renderMachinesDoc());
  });
});

describe.each(MACHINES.map((source) => [source.machine.id, source] as const))('%s machine', (_, source) => {
  const diagram = mermaidFor(source.machine);
  const lines = diagram.split('\n').slice(1);

  it('declares every state node exactly once', () => {
    for (const node of getStateNodes(source.machine.root)) {
      const declarations = lines.filter((line) =>
        [`state "${node.key}" as ${mermaidId(node)}`, `state "${node.key}" as ${mermaidId(node)}{`].includes(
          line.trim(),
        ),
      );
      expect(declarations, node.id).toHaveLength(1);
    }
  });

  it('draws every delayed transition with its delay name', () => {
    for (const node of getStateNodes(source.machine.root)) {
      for (const delayed of node.after) {
        expect(typeof delayed.delay, `${node.id}: delays must be named`).toBe('string');
        const arrows = lines.filter((line) => line.trim().startsWith(`${mermaidId(node)} --> `));
        // A guarded delayed transition carries its guard after the delay name.
        const label = new RegExp(` : after ${String(delayed.delay)}( \\[[^\\]]+\\])?$`);
        expect(arrows.some((line) => label.test(line))).toBe(true);
      }
    }
  });

  it('names every invoked effect on its state', () => {
    for (const node of getStateNodes(source.machine.root)) {
      for (const invoke of node.invoke) {
        expect(diagram).toContain(`${mermaidId(node)} : invoke ${String(invoke.src)}`);
      }
    }
  });

  it('lists every transition in the table', () => {
    const table = transitionTable(source.machine);
    let transitions = 0;
    for (const node of getStateNodes(source.machine.root).concat(source.machine.root)) {
      for (const list of node.transitions.values()) {
        for (const t of list) transitions += Math.max(1, t.target?.length ?? 0);
      }
      for (const t of node.always ?? []) transitions += Math.max(1, t.target?.length ?? 0);
    }
    const rows = table.split('\n').slice(2);
    expect(rows.filter((row) => !row.includes('| entry |'))).toHaveLength(transitions);
  });

  it('is Mermaid stateDiagram-v2 syntax that renders', () => {
    expect(diagram.startsWith('stateDiagram-v2\n')).toBe(true);
    let depth = 0;
    for (const line of lines) {
      const text = line.trim();
      if (text === '}') {
        depth -= 1;
        continue;
      }
      const state = /^state "([^"]+)" as (\w+)(\{)?$/.exec(text);
      if (state) {
        if (state[3]) depth += 1;
        continue;
      }
      // A transition label ends at ':' or ';' and '#' starts a comment: labels must contain neither.
      const edge = /^(\[\*\]|\w+) --> (\[\*\]|\w+)(?: : ([^:;#]+))?$/.exec(text);
      const note = /^(\w+) : ([^:;#]+)$/.exec(text);
      expect(edge ?? note, `not valid Mermaid: ${text}`).not.toBeNull();
      expect(depth).toBeGreaterThanOrEqual(0);
    }
    expect(depth).toBe(0);
  });
});

describe('the run machine diagram', () => {
  const doc = renderMachinesDoc();

  it('shows every named delay of runTiming()', () => {
    for (const delay of Object.keys(runTiming(() => 0).delays)) expect(doc).toContain(`after ${delay}`);
  });

  it('labels guards and effect outcomes on the arrows', () => {
    const run = mermaidFor(MACHINES.find((m) => m.machine.id === 'run')!.machine);
    expect(run).toContain('run_routing --> run_done : always [hasStatus(TERMINAL)]');
    expect(run).toContain(
      'run_started_watching --> run_started_confirmingCrash : health.checked [workerGone]',
    );
    expect(run).toContain('run_failing_writing --> run_done : done writeStatus [writeApplied]');
    expect(run).toContain('run_starting_timed --> run_dryRun : after startTimeout [dryRun]');
    expect(run).toContain('run_starting_timed --> run_timingOutStart : after startTimeout');
  });
});
