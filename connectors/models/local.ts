/**
 * The model store on a local directory (default: the repository's `models/`):
 * `<root>/<kind>/<version>/<file>`. A new version is written into a hidden
 * temporary directory and renamed into place, so a reader (a score instance
 * following the control topic) never sees half a version.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import { ACTIVE_FILE, isPlainName, type ModelStore } from './store.ts';

function checkNames(...names: string[]): void {
  for (const name of names) {
    if (!isPlainName(name)) throw new SluiceError('MODEL_INVALID', `Invalid name '${name}': use letters, digits, '.', '_' and '-' only.`);
  }
}

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException)?.code === 'ENOENT' || (error as NodeJS.ErrnoException)?.code === 'ENOTDIR';

export class LocalModelStore implements ModelStore {
  readonly location: string;
  readonly root: string;

  constructor(root: string) {
    this.root = root;
    this.location = root;
  }

  /** The directory of a version (it may not exist). */
  dir(kind: string, version: string): string {
    checkNames(kind, version);
    return join(this.root, kind, version);
  }

  async versions(kind: string): Promise<string[]> {
    checkNames(kind);
    try {
      const entries = await readdir(join(this.root, kind), { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && isPlainName(e.name)).map((e) => e.name).sort();
    } catch (error) {
      if (isMissing(error)) return [];
      throw new SluiceError('MODEL_STORE_UNAVAILABLE', `Cannot list ${join(this.root, kind)}: ${errorMessage(error)}`, { cause: error });
    }
  }

  async read(kind: string, version: string, file: string): Promise<Buffer | null> {
    checkNames(kind, version, file);
    const path = join(this.root, kind, version, file);
    try {
      return await readFile(path);
    } catch (error) {
      if (isMissing(error)) return null;
      throw new SluiceError('MODEL_STORE_UNAVAILABLE', `Cannot read ${path}: ${errorMessage(error)}`, { cause: error });
    }
  }

  async create(kind: string, version: string, files: ReadonlyMap<string, Buffer>): Promise<void> {
    checkNames(kind, version, ...files.keys());
    const target = join(this.root, kind, version);
    if (await stat(target).then(() => true, () => false)) {
      throw new SluiceError('MODEL_VERSION_EXISTS', `Version ${version} of ${kind} already exists at ${target}; versions are immutable: register it under a new version name.`);
    }
    const staging = join(this.root, kind, `.staging-${version}-${randomBytes(4).toString('hex')}`);
    await mkdir(staging, { recursive: true });
    try {
      for (const [name, bytes] of files) await writeFile(join(staging, name), bytes, { flag: 'wx' });
      // rename(2) onto an existing non-empty directory fails: two racing registrations cannot both win.
      await rename(staging, target);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      const code = (error as NodeJS.ErrnoException)?.code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new SluiceError('MODEL_VERSION_EXISTS', `Version ${version} of ${kind} already exists at ${target}; versions are immutable.`, { cause: error });
      }
      throw new SluiceError('MODEL_STORE_UNAVAILABLE', `Cannot write version ${version} to ${target}: ${errorMessage(error)}`, { cause: error });
    }
  }

  async defaultVersion(kind: string): Promise<string | null> {
    checkNames(kind);
    const path = join(this.root, kind, ACTIVE_FILE);
    try {
      const name = (await readFile(path, 'utf8')).trim();
      return name === '' ? null : name;
    } catch (error) {
      if (isMissing(error)) return null;
      throw new SluiceError('MODEL_STORE_UNAVAILABLE', `Cannot read ${path}: ${errorMessage(error)}`, { cause: error });
    }
  }
}
