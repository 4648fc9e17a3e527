// Validation of what callers hand a RunStore, shared by every store: one definition of a valid run id,
// tag set and appended event.
import { InvalidTagsError, RunwardenError } from '../core/errors.js';
import type { EngineEventInput } from '../core/types.js';

/** Validates tags (plain object, string values) and returns a copy the caller can no longer mutate. */
export function copyTags(tags: unknown): Record<string, string> {
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) {
    throw new InvalidTagsError(
      `Tags must be an object of string keys to string values; got ${describe(tags)}.`,
    );
  }
  const proto = Object.getPrototypeOf(tags);
  if (proto !== Object.prototype && proto !== null) {
    throw new InvalidTagsError(
      `Tags must be a plain object of string keys to string values; got ${describe(tags)}.`,
    );
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(tags)) {
    if (typeof value !== 'string') {
      throw new InvalidTagsError(
        `Tag ${JSON.stringify(key)} must have a string value; got ${describe(value)}.`,
      );
    }
    setTag(out, key, value);
  }
  return out;
}

export function mergeTags(
  target: Record<string, string>,
  tags: Record<string, string>,
): Record<string, string> {
  for (const [key, value] of Object.entries(tags)) setTag(target, key, value);
  return target;
}

/** defineProperty, not assignment: a "__proto__" tag must stay an ordinary key, not replace the prototype. */
function setTag(target: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'undefined') return 'undefined';
  return `${typeof value} ${String(value)}`;
}

export function validateRunId(runId: unknown): asserts runId is string {
  if (typeof runId !== 'string' || runId.length === 0) {
    throw new RunwardenError(
      'INVALID_RUN_ID',
      `A run id must be a non-empty string; got ${describe(runId)}.`,
    );
  }
}

/** Status events only come from transition(), in the same step as the status change they describe. */
export function assertEngineEvent(event: EngineEventInput): void {
  if (event.type !== 'ENGINE_EVENT') {
    throw new RunwardenError(
      'INVALID_EVENT',
      `appendEvent only appends ENGINE_EVENT; got ${JSON.stringify(event.type)} (status events come from transition()).`,
    );
  }
}
