// Tag validation and copying shared by the stores: one definition of what a valid tag set is.
import { InvalidTagsError } from './errors.js';

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

export function mergeTags(target: Record<string, string>, tags: Record<string, string>): Record<string, string> {
  for (const [key, value] of Object.entries(tags)) setTag(target, key, value);
  return target;
}

/** defineProperty, not assignment: a "__proto__" tag must stay an ordinary key, not replace the prototype. */
export function setTag(target: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'undefined') return 'undefined';
  return `${typeof value} ${String(value)}`;
}
