/**
 * The Avro contracts as the field keeps them: plain `.avsc` files that a
 * producer in any language, or the registry's own tooling, can read.
 * `schemas/control.avsc` is shared; `schemas/<kind>/<topic>.avsc` belong to a
 * pipeline.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTRACT_TOPICS, type ContractTopic } from './contracts.ts';
import { errorMessage, SluiceError } from './errors.ts';

export const SCHEMAS_ROOT = fileURLToPath(new URL('../schemas/', import.meta.url));

/** Reads and parses one `.avsc` file; a missing or broken file is a CONFIG_INVALID naming it. */
export function readAvsc(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SluiceError('CONFIG_INVALID', `Cannot read the Avro contract ${path}: ${errorMessage(error)}`, { cause: error });
  }
  try {
    const schema = JSON.parse(text) as unknown;
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Error('not a JSON object');
    return schema as Record<string, unknown>;
  } catch (error) {
    throw new SluiceError('CONFIG_INVALID', `The Avro contract ${path} is not a schema: ${errorMessage(error)}`, { cause: error });
  }
}

/** A pipeline's contracts by topic, from its schemas directory. */
export function contractSchemas(schemasDir: string): Record<ContractTopic, Record<string, unknown>> {
  return Object.fromEntries(CONTRACT_TOPICS.map((topic) => [topic, readAvsc(join(schemasDir, `${topic}.avsc`))])) as Record<ContractTopic, Record<string, unknown>>;
}

export const controlSchema = (): Record<string, unknown> => readAvsc(join(SCHEMAS_ROOT, 'control.avsc'));
