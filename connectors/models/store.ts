/**
 * Where model versions live: one interface, two backends. A version is an
 * immutable set of files (`model.onnx`, `card.json`, anything the card names)
 * under `<kind>/<version>/`; `<kind>/ACTIVE` names the default version, served
 * when the control topic holds no champion alias for a pipeline.
 *
 * - `local` (default): a directory, the repository's `models/` unless
 *   `SLUICE_MODELS_DIR` says otherwise. One machine, or a shared volume.
 * - `s3`: an S3-compatible bucket (AWS S3, MinIO, Ceph, R2…), for deployments
 *   where score instances run on several machines.
 *
 * Versions are immutable: `create` refuses a version that exists
 * (MODEL_VERSION_EXISTS), so a version name always means the same bytes; the
 * card's sha256 lets every reader check that it does.
 */
import { fileURLToPath } from 'node:url';

export const MODELS_ROOT = fileURLToPath(new URL('../../models/', import.meta.url));
export const ACTIVE_FILE = 'ACTIVE';

export interface ModelStore {
  /** Where the store is, for messages: a directory or `s3://bucket/prefix`. */
  readonly location: string;
  /** The version names of a pipeline kind, sorted; empty when it has none. */
  versions(kind: string): Promise<string[]>;
  /** One file of a version, or null when the version or the file does not exist. */
  read(kind: string, version: string, file: string): Promise<Buffer | null>;
  /**
   * Stores a new version's files. Refuses (MODEL_VERSION_EXISTS) a version that
   * already exists; a reader never sees a version without its card.
   */
  create(kind: string, version: string, files: ReadonlyMap<string, Buffer>): Promise<void>;
  /** The version named by `<kind>/ACTIVE`, or null when there is none. */
  defaultVersion(kind: string): Promise<string | null>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Pipeline kinds, versions and file names: plain names, never paths. */
export const isPlainName = (value: string): boolean => NAME.test(value) && !value.includes('..');
