// The published type declarations must compile for a consumer without skipLibCheck. better-sqlite3 ships no
// types of its own and @types/better-sqlite3 is only a devDependency here, so no declaration reachable from a
// package entry point may import it; more generally, every package the declarations import must be a
// dependency that brings its own types. The declarations are emitted in memory, as `npm run build` would.
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  exports: Record<string, { types: string }>;
};

/** The source file behind each `exports[…].types`, e.g. ./dist/src/index.d.ts → <root>/src/index.ts. */
function entryPoints(): string[] {
  return Object.values(pkg.exports).map(({ types }) =>
    join(root, types.replace(/^\.\/dist\//, '').replace(/\.d\.ts$/, '.ts')),
  );
}

/** Declaration files by the path their source has, with `.d.ts`: <root>/src/index.d.ts → text. */
function emitDeclarations(entries: string[]): Map<string, string> {
  const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.build.json'), undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  })!;
  const outDir = join(root, '.declarations-in-memory');
  const options: ts.CompilerOptions = {
    ...config.options,
    noEmit: false,
    declaration: true,
    emitDeclarationOnly: true,
    declarationMap: false,
    sourceMap: false,
    outDir,
    rootDir: root,
  };
  const program = ts.createProgram(entries, options);
  const out = new Map<string, string>();
  const result = program.emit(undefined, (file, text) =>
    out.set(join(root, file.slice(outDir.length)), text),
  );
  const errors = result.diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  expect(errors).toEqual([]);
  return out;
}

/** Every module specifier in a declaration file: imports, re-exports, import() types, references. */
function specifiers(text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  const typeImports = [...text.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
  return [
    ...info.importedFiles.map((f) => f.fileName),
    ...info.referencedFiles.map((f) => f.fileName),
    ...info.typeReferenceDirectives.map((f) => f.fileName),
    ...typeImports,
  ];
}

/** The declaration files reachable from the entry points and the bare (package) specifiers they import. */
function reachable(declarations: Map<string, string>, entries: string[]) {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const queue = entries.map((entry) => entry.replace(/\.ts$/, '.d.ts'));
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    const text = declarations.get(file);
    if (text === undefined) throw new Error(`no declaration emitted for ${file}`);
    files.add(file);
    for (const specifier of specifiers(text)) {
      if (specifier.startsWith('.')) queue.push(resolve(dirname(file), specifier).replace(/\.js$/, '.d.ts'));
      else packages.set(specifier, file);
    }
  }
  return { files, packages };
}

/** `zod/v4` → `zod`, `@scope/name/x` → `@scope/name`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

describe('published type declarations', () => {
  let declarations: Map<string, string>;
  let found: ReturnType<typeof reachable>;

  beforeAll(() => {
    declarations = emitDeclarations(entryPoints());
    found = reachable(declarations, entryPoints());
  }, 120_000);

  it('cover every package entry point, the stores included', () => {
    expect(entryPoints().map((entry) => entry.slice(root.length))).toEqual(
      expect.arrayContaining(['src/index.ts', 'src/testing/index.ts', 'src/worker/worker.ts']),
    );
    expect([...found.files].map((file) => file.slice(root.length))).toEqual(
      expect.arrayContaining([
        'src/stores/sqlite/sqlite-store.d.ts',
        'src/stores/memory/memory-store.d.ts',
        'src/stores/contract.d.ts',
      ]),
    );
  });

  it('import nothing from better-sqlite3', () => {
    const leaks = [...found.packages]
      .filter(([specifier]) => /^(@types\/)?better-sqlite3(\/|$)/.test(specifier))
      .map(([specifier, file]) => `${specifier} (in ${file.slice(root.length)})`);
    expect(leaks).toEqual([]);
  });

  it('import only Node built-ins and dependencies that ship their own types', () => {
    const problems: string[] = [];
    for (const [specifier, file] of found.packages) {
      const name = packageName(specifier.replace(/^node:/, ''));
      if (specifier.startsWith('node:') || builtinModules.includes(name) || name === 'node') continue;
      const where = `${specifier} (in ${file.slice(root.length)})`;
      if (!Object.hasOwn(pkg.dependencies, name)) {
        problems.push(`${where}: not a dependency`);
        continue;
      }
      const resolved = ts.resolveModuleName(
        specifier,
        file,
        { moduleResolution: ts.ModuleResolutionKind.NodeNext, module: ts.ModuleKind.NodeNext },
        ts.sys,
      );
      const typesFile = resolved.resolvedModule?.resolvedFileName ?? '';
      if (typesFile === '' || typesFile.includes('/node_modules/@types/')) {
        problems.push(
          `${where}: its types come from ${typesFile || 'nowhere'}, which a consumer need not have`,
        );
      }
    }
    expect(problems).toEqual([]);
  });
});
