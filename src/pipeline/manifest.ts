// What each stage of `weakseg run` wrote (manifest.json in the run directory), so that a rerun removes exactly
// that and never a file the user put in an output folder. A finished stage's files are listed with their sizes
// and modification times; the listing's digest is what later stages' fingerprints see of it, so a rerun that
// changes a stage's outputs reruns what reads them.
//
// A file is the stage's own when the manifest lists it, or, for a stage that was interrupted (or finished
// before manifests existed), when it is newer than the stage's start recorded in stages.json: while a stage
// runs its output folders hold nothing else, because it starts only on folders without foreign files.
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { writeJsonAtomic } from './common.js';

export interface FileRecord {
  /** Relative to the run directory, '/'-separated. */
  path: string;
  size: number;
  mtimeMs: number;
}

export interface StageManifest {
  files: FileRecord[];
  /** sha256 of the listing: what the stages reading these outputs fingerprint. */
  digest: string;
}

export type Manifest = Record<string, StageManifest | undefined>;

const manifestPath = (root: string) => join(root, 'manifest.json');

export function readManifest(root: string): Manifest {
  const path = manifestPath(root);
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); it lists what each stage wrote, so no `
      + 'output is removed without it: move the run directory\'s output folders away, or delete the file to have '
      + 'them treated as not written by weakseg');
  }
}

/** Every regular file (and symlink) under `paths`, which may be files or folders, in a stable order. */
function listFiles(root: string, paths: readonly string[]): FileRecord[] {
  const out: FileRecord[] = [];
  const visit = (p: string) => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return; // absent
    }
    if (st.isDirectory()) {
      for (const name of readdirSync(p).sort()) visit(join(p, name));
    } else {
      out.push({ path: relative(root, p).split('\\').join('/'), size: st.size, mtimeMs: st.mtimeMs });
    }
  };
  for (const p of paths) visit(p);
  return out;
}

function digestOf(files: readonly FileRecord[]): string {
  return createHash('sha256').update(JSON.stringify(files)).digest('hex').slice(0, 16);
}

/** Records what a finished stage left in its output paths. */
export function recordStageOutputs(root: string, stage: string, outputs: readonly string[]): StageManifest {
  const files = listFiles(root, outputs);
  const entry: StageManifest = { files, digest: digestOf(files) };
  const manifest = readManifest(root);
  manifest[stage] = entry;
  writeJsonAtomic(manifestPath(root), manifest);
  return entry;
}

/**
 * Removes what `stage` wrote in its output paths, and the folders left empty. Refuses, removing nothing, when
 * they hold files it did not write. `since`: the stage's recorded start (ms), for files of an interrupted run.
 */
export function removeStageOutputs(root: string, stage: string, outputs: readonly string[], since: number | null): void {
  const manifest = readManifest(root);
  const listed = new Set((manifest[stage]?.files ?? []).map((f) => f.path));
  const present = listFiles(root, outputs);
  // A second of slack: some file systems keep coarse modification times.
  const foreign = present.filter((f) => !listed.has(f.path) && !(since !== null && f.mtimeMs >= since - 1000));
  if (foreign.length) {
    const names = foreign.slice(0, 5).map((f) => join(root, f.path));
    throw new Error(`stage '${stage}' would rerun, but its output folder${outputs.length > 1 ? 's hold' : ' holds'} `
      + `${foreign.length} file(s) that weakseg run did not write: ${names.join(', ')}${foreign.length > 5 ? ', ...' : ''}. `
      + 'Nothing was deleted; move them away (or use another run directory) and run again');
  }
  for (const f of present) rmSync(join(root, f.path), { force: true });
  for (const p of outputs) removeEmptyFolders(p);
  if (manifest[stage]) {
    delete manifest[stage];
    writeJsonAtomic(manifestPath(root), manifest);
  }
}

/** Deletes `dir` and the folders under it if (after that) they hold nothing. */
function removeEmptyFolders(dir: string): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  for (const name of readdirSync(dir)) removeEmptyFolders(join(dir, name));
  if (readdirSync(dir).length === 0) rmdirSync(dir);
}
