// Writing files so that a failure names the file: Node's errors from writes through a descriptor (ENOSPC
// "no space left on device, write") carry no path, and a user with a full disk needs to know which one.

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
