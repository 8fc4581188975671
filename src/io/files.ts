// Writing files so that a failure names the file: Node's errors from writes through a descriptor (ENOSPC
// "no space left on device, write") carry no path, and a user with a full disk needs to know which one.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** An I/O error that names its file; `code` is the system's (ENOSPC, EROFS, EACCES...). */
export class FileWriteError extends Error {
  override name = 'FileWriteError';
  readonly code: string | undefined;

  constructor(readonly path: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    const message = cause instanceof Error ? cause.message : String(cause);
    super(`${path}: cannot write (${code && !message.startsWith(code) ? `${code}: ` : ''}${message})`, { cause });
    this.code = code;
  }
}

/** Runs `write`, rethrowing any error as a FileWriteError naming `path` (unless it already is one). */
export function writingTo<T>(path: string, write: () => T): T {
  try {
    return write();
  } catch (e) {
    throw e instanceof FileWriteError ? e : new FileWriteError(path, e);
  }
}

/**
 * Writes a file under a temporary name in its folder (created if needed) and renames it into place, so that an
 * interrupted process never leaves a truncated file under the final name; a failure names `path`.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writingTo(path, () => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  });
}
