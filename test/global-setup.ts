// Builds src/ and machines/ to JavaScript for the tests that start real processes (the CLI, run workers on
// the worker SDK): Node 20 cannot run TypeScript. Every file goes through the TypeScript compiler's own
// emitter (tsc's output without type checking, which `npm test` runs separately) into a directory named by a
// hash of the sources under node_modules/.cache, so an unchanged tree is built once and reused, and neither a
// concurrent `npm run build` nor another test run is disturbed.
// Tests find it with inject('runwardenBuild'): <dir>/src/cli/cli.js, <dir>/src/worker/worker.js, …
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Absolute directory holding the built package: src/, machines/ and package.json. */
    runwardenBuild: string;
  }
}

const root = fileURLToPath(new URL('..', import.meta.url));
const cacheDir = join(root, 'node_modules', '.cache', 'runwarden-test-build');
const DONE = '.complete';
const STALE_MS = 24 * 60 * 60 * 1000;

function* tsFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* tsFiles(path);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) yield path;
  }
}

export default async function setup(project: TestProject) {
  const files = ['src', 'machines'].flatMap((dir) => [...tsFiles(join(root, dir))]).sort();
  const hash = createHash('sha256');
  for (const file of [...files, join(root, 'package.json')]) {
    hash.update(relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  const out = join(cacheDir, hash.digest('hex').slice(0, 24));

  if (!existsSync(join(out, DONE))) {
    const ts = (await import('typescript')).default;
    const tmp = `${out}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    for (const file of files) {
      const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
        fileName: file,
        compilerOptions: {
          module: ts.ModuleKind.ESNext,
          target: ts.ScriptTarget.ES2022,
          verbatimModuleSyntax: true,
          inlineSourceMap: true,
        },
      });
      const target = join(tmp, relative(root, file)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, outputText);
    }
    // "type": "module" for the .js files, and the version the CLI prints.
    copyFileSync(join(root, 'package.json'), join(tmp, 'package.json'));
    writeFileSync(join(tmp, DONE), '');
    try {
      renameSync(tmp, out);
    } catch {
      // Another test run built the same sources first: use theirs.
      rmSync(tmp, { recursive: true, force: true });
    }
    pruneStale(out);
  }
  project.provide('runwardenBuild', out);
}

/** Removes builds of other source trees not touched for a day. */
function pruneStale(keep: string): void {
  for (const entry of readdirSync(cacheDir)) {
    const path = join(cacheDir, entry);
    if (path === keep) continue;
    try {
      if (Date.now() - statSync(path).mtimeMs > STALE_MS) rmSync(path, { recursive: true, force: true });
    } catch {
      // raced with another run's cleanup
    }
  }
}
