// The edge set of a machine, read from its definition, and the edge an inspected transition took.
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from 'xstate';

/** `source|event|branch`: one guarded branch of one transition (the unit of coverage). */
export type EdgeKey = string;

export function edgeKey(transition: AnyTransitionDefinition): EdgeKey {
  const source = transition.source;
  const branches =
    transition.eventType === ''
      ? (source.always ?? [])
      : (source.transitions.get(transition.eventType) ?? []);
  const branch = branches.indexOf(transition);
  return `${source.id}|${transition.eventType || 'always'}|${branch}`;
}

export function allEdges(machine: AnyStateMachine): Set<EdgeKey> {
  const edges = new Set<EdgeKey>();
  const visit = (node: AnyStateNode) => {
    for (const branches of node.transitions.values()) for (const t of branches) edges.add(edgeKey(t));
    for (const t of node.always ?? []) edges.add(edgeKey(t));
    for (const child of Object.values(node.states)) visit(child as AnyStateNode);
  };
  visit(machine.root);
  return edges;
}
