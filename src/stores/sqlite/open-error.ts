// Why a SQLite file could not be opened, in words. SQLite itself says only "unable to open database file"
// (SQLITE_CANTOPEN) for a missing, read-only or bogus directory, so on failure the file system is asked
// directly: the first problem found is the one reported, with its errno.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, statSync, type Stats, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { RunwardenError } from '../../core/errors.js';

/** STORE_OPEN_FAILED naming the file and the cause, e.g. "the directory /x is not writable (EACCES)". */
export function openFailure(path: string, error: unknown): RunwardenError {
  return new RunwardenError(
    'STORE_OPEN_FAILED',
    `Cannot open SQLite store ${path}: ${describeCause(path, error)}.`,
    {
      cause: error,
    },
  );
}

function describeCause(path: string, error: unknown): string {
  // An in-memory or temporary database has no file to look at.
  const onDisk = path !== '' && path !== ':memory:';
  return (onDisk && fileProblem(path)) || sqliteProblem(error) || errorText(error);
}

/** The first thing wrong with the path on disk, or undefined when the file system sees no problem. */
function fileProblem(path: string): string | undefined {
  const dir = dirname(path);
  const dirStat = stat(dir);
  if (typeof dirStat === 'string') return missingDirectory(dir, dirStat);
  if (!dirStat.isDirectory()) return `${dir} is not a directory (ENOTDIR)`;
  // SQLite creates the -wal and -shm files next to the database, so the directory must take new files.
  const dirCode = writeProbe(dir);
  if (dirCode) return `the directory ${dir} is not writable (${dirCode})`;
  const fileStat = stat(path);
  if (typeof fileStat === 'string') return undefined;
  if (fileStat.isDirectory()) return 'it is a directory, not a database file (EISDIR)';
  const fileCode = openCode(path, 'r+');
  return fileCode && `the file is not readable and writable (${fileCode})`;
}

/** The directory could not be stat'ed: name the ancestor that is in the way, or the missing directory. */
function missingDirectory(dir: string, code: string): string {
  if (code !== 'ENOENT' && code !== 'ENOTDIR') return `the directory ${dir} cannot be read (${code})`;
  for (let ancestor = dirname(dir); ; ancestor = dirname(ancestor)) {
    const found = stat(ancestor);
    if (typeof found !== 'string') {
      return found.isDirectory()
        ? `the directory ${dir} does not exist (ENOENT)`
        : `${ancestor} is not a directory (ENOTDIR)`;
    }
    if (ancestor === dirname(ancestor)) return `the directory ${dir} does not exist (${code})`;
  }
}

function sqliteProblem(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'SQLITE_NOTADB') return 'it is not a SQLite database (SQLITE_NOTADB)';
  if (code === 'SQLITE_CORRUPT') return 'the database file is corrupt (SQLITE_CORRUPT)';
  return undefined;
}

function errorText(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' ? `${message} (${code})` : message;
}

function stat(path: string): Stats | string {
  try {
    return statSync(path);
  } catch (error) {
    return codeOf(error);
  }
}

/** Creates and removes a uniquely named file: the only check that root, read-only mounts and ACLs all honour. */
function writeProbe(dir: string): string | undefined {
  const probe = join(dir, `.runwarden-write-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  const code = openCode(probe, 'wx');
  if (code === undefined) unlinkSync(probe);
  return code;
}

function openCode(path: string, flags: string): string | undefined {
  try {
    closeSync(openSync(path, flags));
    return undefined;
  } catch (error) {
    return codeOf(error);
  }
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : errorText(error);
}
