// The published package must stand on its own: every relative link in its markdown resolves to a file in the
// tarball, every entry point lies under "files", and installing it runs no build. The file list comes from
// `npm pack --dry-run` itself (with --ignore-scripts: no build), so it is npm's own idea of what ships.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

interface PackageJson {
  main?: string;
  types?: string;
  bin?: string | Record<string, string>;
  exports?: unknown;
  files?: string[];
  scripts?: Record<string, string>;
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as PackageJson;

let packed: Set<string>;

beforeAll(async () => {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    maxBuffer: 16 * 1024 * 1024,
  });
  const [result] = JSON.parse(stdout) as { files: { path: string }[] }[];
  packed = new Set(result!.files.map((f) => f.path));
}, 60_000);

/** Markdown without fenced code, inline code and HTML comments: what is left is prose and its links. */
function prose(markdown: string): string {
  return markdown
    .replace(/^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, '')
    .replace(/<!--[\s\S]*?-->/g, '')
    .replace(/(`+)[\s\S]*?\1/g, '');
}

/** Inline link and image targets, plus reference-style definitions. */
function linkTargets(markdown: string): string[] {
  const text = prose(markdown);
  const inline = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!);
  const defined = [...text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?/gm)].map((m) => m[1]!);
  return [...inline, ...defined];
}

/** Anchors GitHub gives a file's headings (github-slugger's rules, duplicates numbered). */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(/^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, '');
  for (const match of withoutFences.matchAll(/^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/gm)) {
    const text = match[1]!
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/<[^>]+>/g, '')
      .replace(/[`*]/g, '');
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Problems with the relative links of one packed markdown file, as "file: target (why)". */
function brokenLinks(file: string): string[] {
  const problems: string[] = [];
  for (const target of linkTargets(readFileSync(join(root, file), 'utf8'))) {
    // Absolute URLs (https:, mailto:) and protocol-relative ones are not the tarball's business.
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue;
    const [rawPath = '', anchor] = target.split('#', 2);
    const path = decodeURIComponent(rawPath);
    const resolved = path === '' ? file : posix.normalize(posix.join(posix.dirname(file), path));
    if (resolved.startsWith('../') || posix.isAbsolute(resolved)) {
      problems.push(`${file}: ${target} (points outside the package)`);
      continue;
    }
    const dir = resolved.replace(/\/$/, '');
    const isFile = packed.has(resolved);
    if (!isFile && ![...packed].some((p) => p.startsWith(`${dir}/`))) {
      problems.push(`${file}: ${target} (${resolved} is not in the package)`);
      continue;
    }
    if (anchor && isFile && resolved.endsWith('.md')) {
      if (!headingAnchors(readFileSync(join(root, resolved), 'utf8')).has(anchor)) {
        problems.push(`${file}: ${target} (no heading #${anchor} in ${resolved})`);
      }
    }
  }
  return problems;
}

/** Every path package.json points consumers at: main, types, bin, and each leaf of exports. */
function entryPoints(): string[] {
  const paths: string[] = [];
  if (pkg.main) paths.push(pkg.main);
  if (pkg.types) paths.push(pkg.types);
  if (typeof pkg.bin === 'string') paths.push(pkg.bin);
  else if (pkg.bin) paths.push(...Object.values(pkg.bin));
  const walk = (value: unknown) => {
    if (typeof value === 'string') paths.push(value);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk(pkg.exports);
  return paths.map((p) => posix.normalize(p));
}

/** Whether a path lies under a "files" entry. Entries here are plain paths, not globs. */
function shipped(path: string): boolean {
  return (pkg.files ?? []).some((entry) => {
    const e = posix.normalize(entry).replace(/\/$/, '');
    return path === e || path.startsWith(`${e}/`);
  });
}

describe('the packed package', () => {
  it('ships the README, the changelog and every doc', () => {
    const docs = readdirSync(join(root, 'docs'))
      .filter((name) => name.endsWith('.md'))
      .map((name) => `docs/${name}`);
    expect(docs).toContain('docs/api.md');
    for (const file of ['README.md', 'CHANGELOG.md', ...docs]) {
      expect(packed, `${file} is not in the package`).toContain(file);
    }
  });

  it('has no relative link in its markdown that leads outside the tarball', () => {
    const markdown = [...packed].filter((p) => p.endsWith('.md')).sort();
    expect(markdown.length).toBeGreaterThan(1);
    expect(markdown.flatMap(brokenLinks)).toEqual([]);
  });

  it('lists every entry point under "files", built from a source that exists', () => {
    const entries = entryPoints();
    expect(entries).toContain('dist/src/cli/cli.js');
    for (const entry of entries) {
      expect(shipped(entry), `${entry} is not under package.json "files"`).toBe(true);
      // dist/<path>.js and dist/<path>.d.ts are compiled from <path>.ts (tsconfig.build.json: rootDir ".").
      const source = entry.replace(/^dist\//, '').replace(/(\.d)?\.js$|\.d\.ts$/, '.ts');
      expect(existsSync(join(root, source)), `${entry}: no source ${source}`).toBe(true);
    }
  });

  it('gives its bin a shebang, so `runwarden` runs under node once installed', () => {
    const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
    expect(bins.length).toBeGreaterThan(0);
    for (const bin of bins) {
      const source = posix
        .normalize(bin)
        .replace(/^dist\//, '')
        .replace(/\.js$/, '.ts');
      expect(readFileSync(join(root, source), 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
    }
  });
});

describe('package.json scripts', () => {
  it('builds when packing, not on every install (no "prepare")', () => {
    expect(pkg.scripts?.prepare).toBeUndefined();
    expect(pkg.scripts?.prepack).toMatch(/\bnpm run build\b/);
  });

  it('builds before running the demo, so `npm ci && npm run demo` works on a fresh clone', () => {
    const demo = pkg.scripts?.demo ?? '';
    expect(demo).toMatch(/^npm run build && /);
    expect(demo).toContain('dist/src/cli/cli.js demo');
  });

  it('has every `npm run <script>` the shipped markdown mentions', () => {
    const mentioned = [...packed]
      .filter((p) => p.endsWith('.md'))
      .flatMap((file) => [
        ...readFileSync(join(root, file), 'utf8').matchAll(/\bnpm run(?:\s+-[\w-]+)*\s+([\w:-]+)/g),
      ])
      .map((m) => m[1]!);
    expect(mentioned).toContain('demo');
    expect([...new Set(mentioned)].filter((name) => !pkg.scripts?.[name])).toEqual([]);
  });
});
