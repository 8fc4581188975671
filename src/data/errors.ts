/**
 * Errors about input files, and the policy for bad files.
 *
 * Every problem with a single input (an unreadable image, a mask of the wrong size, an unknown tag) is a
 * `DataError` naming the file and the cause. Readers and the batch loader route such per-item errors through a
 * `BadFileLog`: with the `'fail'` policy the error is thrown, with `'skip'` the item is dropped, reported and
 * counted, so a long run is not lost to one corrupt JPEG while the count is still available at the end.
 */

export class DataError extends Error {
  override name = 'DataError';

  /**
   * @param path the file at fault (or the file holding the faulty entry)
   * @param reason what is wrong, for a human; the message is `${path}: ${reason}`
   */
  constructor(
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${reason}`, options);
  }
}

export type BadFilePolicy = 'skip' | 'fail';

export interface BadFile {
  path: string;
  reason: string;
  /** Dataset item id, when the file belongs to one. */
  id?: string;
}

export interface BadFileOptions {
  /** What to do with a bad item: throw (`'fail'`, the default) or drop, report and count it (`'skip'`). */
  onBadFile?: BadFilePolicy;
  /** Where skipped items are recorded; share one log between readers and loaders to get a single count. */
  badFiles?: BadFileLog;
}

/** Collects skipped items. `report` is called once per skipped item (default: one line on stderr). */
export class BadFileLog {
  readonly entries: BadFile[] = [];

  constructor(
    private readonly report: (bad: BadFile) => void = (bad) =>
      process.stderr.write(`weakseg: skipped ${bad.path}: ${bad.reason}\n`),
  ) {}

  get count(): number {
    return this.entries.length;
  }

  record(bad: BadFile): void {
    this.entries.push(bad);
    this.report(bad);
  }

  /** One line per skipped file, for an end-of-run summary. */
  summary(): string {
    if (this.count === 0) return 'no bad files';
    return [`${this.count} bad file(s) skipped:`, ...this.entries.map((b) => `  ${b.path}: ${b.reason}`)].join('\n');
  }
}

/**
 * Apply `policy` to a per-item failure: rethrow it under `'fail'`, record it under `'skip'`.
 * Errors that are not `DataError`s are programming errors, not bad files, and are always rethrown.
 */
export function handleBadFile(policy: BadFilePolicy, log: BadFileLog, error: unknown, id?: string): void {
  if (policy === 'fail' || !(error instanceof DataError)) throw error;
  log.record(id === undefined ? { path: error.path, reason: error.reason } : { path: error.path, reason: error.reason, id });
}

/** A readable cause from a caught value (Node system errors carry a code such as ENOENT). */
export function describeCause(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.startsWith(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}
