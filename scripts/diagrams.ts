// Generates docs/machines.md from the machine definitions: one Mermaid stateDiagram-v2 per machine plus a
// table of every transition, so the diagrams are never drawn by hand and cannot drift from machines/.
//
//   npm run docs:diagrams            regenerate docs/machines.md
//   npm run docs:diagrams -- --check exit 1 when docs/machines.md is stale (CI)
//
// test/diagrams.test.ts imports renderMachinesDoc() and compares it with the committed file.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from 'xstate';
import { type DirectedGraphNode, toDirectedGraph } from 'xstate/graph';
import { runMachine } from '../machines/run.machine.js';
import { shardMachine } from '../machines/shard.machine.js';
import { supervisorMachine } from '../machines/supervisor.machine.js';

/** Where the generated document lives, relative to the package root. */
export const MACHINES_DOC_PATH = 'docs/machines.md';

export interface DiagramSource {
  /** Heading of the machine's section. */
  title: string;
  /** Source file, relative to the package root. */
  file: string;
  machine: AnyStateMachine;
  /** One paragraph saying what the machine is for (the diagram says how). */
  summary: string;
}

export const MACHINES: readonly DiagramSource[] = [
  {
    title: 'Supervisor',
    file: 'machines/supervisor.machine.ts',
    machine: supervisorMachine,
    summary:
      'The root actor. It routes `runs.updated` (store feed and sweep) and `health.checked` (health poll) to ' +
      'run actors by XState system id, spawns a run actor inside the open shard for every active run it has ' +
      'not seen, and runs the health poll as a delayed transition. Its routing transitions have no target ' +
      '(they only run actions), so they appear in the table, not as arrows.',
  },
  {
    title: 'Shard',
    file: 'machines/shard.machine.ts',
    machine: shardMachine,
    summary:
      'Owns at most `shardSize` run actors, so no parent copies a large `children` map on spawn or stop. ' +
      'It stops each run actor that reaches its final state and reports itself drained once it is sealed ' +
      'and empty.',
  },
  {
    title: 'Run',
    file: 'machines/run.machine.ts',
    machine: runMachine,
    summary:
      'One actor per run. Each top-level state mirrors a stored `RunStatus`; its timeout is a delayed ' +
      'transition whose delay is computed from stored timestamps (`runTiming`). Every side effect is an ' +
      'invoked actor the host provides, and while it is in flight the actor sits in a state named after it.',
  },
];

// --- model ---------------------------------------------------------------------------------------------

export interface EdgeRow {
  from: string;
  trigger: string;
  guard: string | undefined;
  /** XState id of the target; undefined for a transition that only runs actions. */
  to: string | undefined;
  actions: string[];
}

/** Mermaid ids are global to a diagram and may not contain dots: use the XState id with `_` separators. */
export function mermaidId(node: AnyStateNode): string {
  return node.id.replace(/[^A-Za-z0-9_]/g, '_');
}

function invokedSources(node: AnyStateNode): Map<string, string> {
  const sources = new Map<string, string>();
  for (const invoke of node.invoke) {
    sources.set(invoke.id, typeof invoke.src === 'string' ? invoke.src : invoke.id);
  }
  return sources;
}

/** How a transition is triggered: event name, `after <delay>`, `always`, `done <actor>`, `error <actor>`. */
export function triggerText(node: AnyStateNode, transition: AnyTransitionDefinition): string {
  const eventType = String(transition.eventType ?? '');
  if (eventType === '') return 'always';
  const delay = (transition as { delay?: unknown }).delay;
  if (eventType.startsWith('xstate.after.')) {
    if (typeof delay === 'string') return `after ${delay}`;
    if (typeof delay === 'number') return `after ${delay} ms`;
    return 'after (computed delay)';
  }
  for (const [prefix, word] of [
    ['xstate.done.actor.', 'done'],
    ['xstate.error.actor.', 'error'],
  ] as const) {
    if (!eventType.startsWith(prefix)) continue;
    const actorId = eventType.slice(prefix.length);
    if (actorId === '*') return `${word} (any child)`;
    return `${word} ${invokedSources(node).get(actorId) ?? actorId}`;
  }
  return eventType;
}

type GuardLike = {
  type?: unknown;
  params?: unknown;
  name?: string;
  guards?: unknown[];
};

/** A guard as text: its name, static params in parentheses, `!`/`&&`/`||` for not/and/or. */
export function guardText(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  const g = guard as GuardLike;
  if (typeof guard === 'function') {
    const inner = (g.guards ?? []).map((x) => guardText(x) ?? '?');
    if (g.name === 'not' && inner.length === 1) return `!${inner[0]}`;
    if (g.name === 'and') return inner.join(' && ');
    if (g.name === 'or') return inner.join(' || ');
    if (g.name === 'stateIn') return 'stateIn';
    return g.name ? g.name : 'inline guard';
  }
  const type = typeof g.type === 'string' ? g.type : 'guard';
  if (g.params && typeof g.params === 'object') {
    const values = Object.entries(g.params as Record<string, unknown>).map(([key, value]) =>
      Object.keys(g.params as object).length === 1 ? String(value) : `${key}=${String(value)}`,
    );
    return `${type}(${values.join(', ')})`;
  }
  return type;
}

/** An action as text: its name, or the built-in it is (assign, enqueueActions, sendTo, …). */
export function actionText(action: unknown): string {
  if (typeof action === 'string') return action;
  const a = action as { type?: unknown; name?: string };
  if (typeof a.type === 'string') return a.type.replace(/^xstate\./, '');
  return a.name ? a.name : 'inline';
}

function rowsOf(node: AnyStateNode, transitions: readonly AnyTransitionDefinition[]): EdgeRow[] {
  return transitions.flatMap((t): EdgeRow[] => {
    const common = {
      from: node.id,
      trigger: triggerText(node, t),
      guard: guardText(t.guard),
      actions: t.actions.map(actionText),
    };
    if (!t.target || t.target.length === 0) return [{ ...common, to: undefined }];
    return t.target.map((target) => ({ ...common, to: target.id }));
  });
}

/** Every transition of a state node, in definition order: events (incl. delays and done/error), then always. */
export function edgesOf(graphNode: DirectedGraphNode): EdgeRow[] {
  const node = graphNode.stateNode;
  const seen = new Set<AnyTransitionDefinition>();
  const fromGraph: AnyTransitionDefinition[] = [];
  for (const edge of graphNode.edges) {
    // toDirectedGraph emits one edge per target; keep each transition once and expand targets ourselves.
    if (seen.has(edge.transition)) continue;
    seen.add(edge.transition);
    fromGraph.push(edge.transition);
  }
  return [...rowsOf(node, fromGraph), ...rowsOf(node, node.always ?? [])];
}

function walk(graphNode: DirectedGraphNode, visit: (node: DirectedGraphNode) => void): void {
  visit(graphNode);
  for (const child of graphNode.children) walk(child, visit);
}

/** A state's entry actions, without the timers XState adds for its `after` transitions (shown as arrows). */
function entryText(node: AnyStateNode): string[] {
  return node.entry
    .filter((action) => {
      const a = action as { type?: unknown; id?: unknown };
      return !(a.type === 'xstate.raise' && typeof a.id === 'string' && a.id.startsWith('xstate.after.'));
    })
    .map(actionText);
}

// --- Mermaid -------------------------------------------------------------------------------------------

/** Mermaid ends a transition label at `:`, `;` or a newline, and `#` may start a comment: keep them out. */
function mermaidLabel(text: string): string {
  return text
    .replace(/[:;#\n]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

function edgeLabel(row: EdgeRow): string {
  return mermaidLabel(row.guard ? `${row.trigger} [${row.guard}]` : row.trigger);
}

function declareStates(node: DirectedGraphNode, indent: string, lines: string[]): void {
  const stateNode = node.stateNode;
  const initial = stateNode.type === 'compound' ? stateNode.initial.target[0] : undefined;
  if (initial) lines.push(`${indent}[*] --> ${mermaidId(initial)}`);
  for (const child of node.children) {
    const childNode = child.stateNode;
    const id = mermaidId(childNode);
    if (child.children.length > 0) {
      // No space before `{`: Mermaid would make it part of the id.
      lines.push(`${indent}state "${childNode.key}" as ${id}{`);
      declareStates(child, `${indent}  `, lines);
      lines.push(`${indent}}`);
    } else {
      lines.push(`${indent}state "${childNode.key}" as ${id}`);
    }
    const notes = [
      ...childNode.invoke.map((i) => `invoke ${typeof i.src === 'string' ? i.src : i.id}`),
      ...entryText(childNode).map((a) => `entry ${a}`),
    ];
    for (const note of notes) lines.push(`${indent}${id} : ${mermaidLabel(note)}`);
    if (childNode.type === 'final') lines.push(`${indent}${id} --> [*]`);
  }
}

/** The machine as a Mermaid stateDiagram-v2 (without the code fence). */
export function mermaidFor(machine: AnyStateMachine): string {
  const graph = toDirectedGraph(machine);
  const lines = ['stateDiagram-v2'];
  // States (and their initial/final markers) first, nested as in the machine; every arrow between two
  // states afterwards at the top level, where Mermaid leaves the states in the composite they were declared in.
  declareStates(graph, '  ', lines);
  const byId = new Map<string, AnyStateNode>();
  walk(graph, (n) => byId.set(n.stateNode.id, n.stateNode));
  walk(graph, (n) => {
    for (const row of edgesOf(n)) {
      if (row.to === undefined) continue; // actions only: listed in the table
      const source = n.stateNode;
      const target = byId.get(row.to);
      if (!target || source === graph.stateNode) continue;
      lines.push(`  ${mermaidId(source)} --> ${mermaidId(target)} : ${edgeLabel(row)}`);
    }
  });
  return lines.join('\n');
}

// --- tables --------------------------------------------------------------------------------------------

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function code(text: string): string {
  return `\`${text}\``;
}

/** Every transition and entry action of the machine as a Markdown table. */
export function transitionTable(machine: AnyStateMachine): string {
  const graph = toDirectedGraph(machine);
  const rows: string[] = ['| from | trigger | guard | to | actions |', '|---|---|---|---|---|'];
  walk(graph, (n) => {
    const from = code(n.stateNode.id);
    const entry = entryText(n.stateNode);
    if (entry.length > 0) rows.push(`| ${from} | entry | | | ${cell(entry.join(', '))} |`);
    for (const row of edgesOf(n)) {
      rows.push(
        `| ${from} | ${cell(code(row.trigger))} | ${row.guard ? cell(code(row.guard)) : ''} | ${
          row.to ? code(row.to) : '*(stays)*'
        } | ${cell(row.actions.join(', '))} |`,
      );
    }
  });
  return rows.join('\n');
}

/** Named delays, invoked actors and guards the machine refers to, as one line each. */
function namesUsed(machine: AnyStateMachine): string[] {
  const delays = new Set<string>();
  const actors = new Set<string>();
  const guards = new Set<string>();
  walk(toDirectedGraph(machine), (n) => {
    for (const invoke of n.stateNode.invoke) if (typeof invoke.src === 'string') actors.add(invoke.src);
    for (const delayed of n.stateNode.after) if (typeof delayed.delay === 'string') delays.add(delayed.delay);
    for (const row of edgesOf(n)) if (row.guard) guards.add(row.guard.replace(/\(.*$/, ''));
  });
  const list = (set: Set<string>) => (set.size === 0 ? 'none' : [...set].map(code).join(', '));
  return [
    `- Delays (named in \`setup()\`, values from the host): ${list(delays)}`,
    `- Invoked actors (effects, provided by the host with \`.provide()\`): ${list(actors)}`,
    `- Guards: ${list(guards)}`,
  ];
}

// --- document ------------------------------------------------------------------------------------------

const PREAMBLE = `# Machine diagrams

<!-- GENERATED by scripts/diagrams.ts from machines/*.machine.ts. Do not edit: run \`npm run docs:diagrams\`.
     test/diagrams.test.ts fails when this file no longer matches the machines. -->

These diagrams are generated from the machine definitions (\`toDirectedGraph\` from \`xstate/graph\`, plus each
state node's eventless transitions), so they show exactly what the code does. See
[architecture.md](architecture.md) for how the machines fit together and [semantics.md](semantics.md) for
what each timeout means.

How to read them:

- A state is shown by its key; nesting is the machine's nesting. The first state of a composite is marked by
  the \`[*]\` arrow; a final state has an arrow to \`[*]\`.
- Arrow labels: \`event [guard]\`. \`after <delay>\` is a delayed transition and names the delay from
  \`setup({ delays })\` (the run machine's come from \`runTiming(now)\`: absolute deadlines from stored
  timestamps). \`always [guard]\` is an eventless transition, taken as soon as its guard holds.
  \`done <actor>\` / \`error <actor>\` is the invoked effect resolving / rejecting.
- \`invoke <actor>\` inside a state is the effect that runs while the actor is in that state; leaving the state
  abandons it.
- Transitions without a target only run actions (record a newer run, count an UNKNOWN health result, route
  an update). They change no state, so they are not drawn; the table under each diagram lists every
  transition, including those, with its actions.
`;

export function renderMachinesDoc(machines: readonly DiagramSource[] = MACHINES): string {
  const sections = machines.map((source) =>
    [
      `## ${source.title} (\`${source.machine.id}\`)`,
      '',
      `Source: [${source.file}](../${source.file})`,
      '',
      source.summary,
      '',
      '```mermaid',
      mermaidFor(source.machine),
      '```',
      '',
      ...namesUsed(source.machine),
      '',
      '<details>',
      `<summary>Every transition of <code>${source.machine.id}</code></summary>`,
      '',
      transitionTable(source.machine),
      '',
      '</details>',
      '',
    ].join('\n'),
  );
  return `${PREAMBLE}\n${sections.join('\n')}`;
}

// --- CLI -----------------------------------------------------------------------------------------------

/** The package root: the nearest directory above this file with runwarden's package.json. */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'runwarden') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`diagrams: no runwarden package.json above ${from}`);
    dir = parent;
  }
}

function main(argv: string[]): number {
  const target = join(packageRoot(), MACHINES_DOC_PATH);
  const wanted = renderMachinesDoc();
  const current = existsSync(target) ? readFileSync(target, 'utf8') : undefined;
  if (argv.includes('--check')) {
    if (current === wanted) return 0;
    console.error(`${MACHINES_DOC_PATH} does not match the machines: run \`npm run docs:diagrams\`.`);
    return 1;
  }
  if (current !== wanted) writeFileSync(target, wanted);
  console.log(`${MACHINES_DOC_PATH} ${current === wanted ? 'is up to date' : 'written'}.`);
  return 0;
}

const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(entry).href) process.exitCode = main(process.argv.slice(2));
