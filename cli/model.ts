/**
 * `sluice model register | list | promote | rollback`: the model lifecycle.
 *
 * Versions are immutable artifacts in the model store (connectors/models:
 * a local directory by default, or S3-compatible storage). Aliases are records
 * on the compacted control topic: `champion` is served by every score instance
 * of the pipeline instance, `challenger` is scored in shadow beside it. Each
 * record says who set it, when and why, and the versions it named before, so
 * rollback needs nothing else. docs/models.md is the operator's guide.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { modelStoreFromEnv } from '../connectors/models/config.ts';
import { isPlainName, type ModelStore } from '../connectors/models/store.ts';
import { CARD_FILE, type ModelCard, parseCard } from '../connectors/onnx/card.ts';
import { loadModelFromFiles, loadModelFromStore, type ModelSignature } from '../connectors/onnx/model.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { errorMessage, isSluiceError, SluiceError } from '../lib/errors.ts';
import { createCommandLogger } from '../lib/log.ts';
import type { PipelineInstance } from '../lib/pipeline.ts';
import { controlSchema } from '../lib/schemas.ts';
import { type Connections, connectionsFromEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import {
  aliasSetting,
  CONTROL_SUBJECT,
  type ControlSetting,
  type ControlState,
  MODEL_ALIASES,
  type ModelAlias,
  promotedAlias,
  readControl,
  rolledBackAlias,
  writeControl,
} from '../processors/runtime/control.ts';

/** What the pipeline's code expects of any model it serves. */
export function signatureOf(pipeline: PipelineInstance): ModelSignature {
  const model = pipeline.plugin.model;
  return { featureNames: model.featureNames, classes: model.output.classes, monitoredNames: model.monitoredNames };
}

/** Where a command runs: the pipeline instance, the store, the cluster. */
export interface ModelContext {
  pipeline: PipelineInstance;
  store: ModelStore;
  connections: Connections;
  /** Who is acting, for the audit trail on the control topic. */
  by: string;
}

export function modelContext(pipelineName: string, env: NodeJS.ProcessEnv = process.env): ModelContext {
  return {
    pipeline: pipelineByName(pipelineName),
    store: modelStoreFromEnv(env),
    connections: connectionsFromEnv(env),
    by: env.SLUICE_ACTOR ?? env.USER ?? 'sluice-cli',
  };
}

const quietLogger = () => createCommandLogger({ component: 'model-cli' }, 'error');

async function controlState(ctx: ModelContext): Promise<ControlState> {
  return readControl({
    brokers: ctx.connections.kafkaBrokers,
    catalog: new SchemaCatalog(ctx.connections.schemaRegistryUrl),
    clientId: `${ctx.pipeline.name}.model-cli`,
    logger: quietLogger(),
  });
}

// ---------------------------------------------------------------- register

export interface Registered {
  version: string;
  pipeline: string;
  sha256: string;
  location: string;
  drill: boolean;
}

/**
 * Validates a version directory and stores it: the card (complete, for this
 * pipeline, with reference examples), the ONNX file against the card's sha256,
 * the pipeline's input/output signature, and the reference examples scored to
 * the card's probabilities within 1e-6. Anything else is refused with
 * MODEL_INVALID, naming what is wrong; an existing version with
 * MODEL_VERSION_EXISTS.
 */
export async function registerVersion(ctx: ModelContext, fromDir: string): Promise<Registered> {
  const kind = ctx.pipeline.plugin.kind;
  const dir = resolve(fromDir);
  const entries = await readdir(dir, { withFileTypes: true }).catch((error: unknown) => {
    throw new SluiceError('MODEL_INVALID', `Cannot read the version directory ${dir}: ${errorMessage(error)}`, { cause: error });
  });
  const files = new Map<string, Buffer>();
  for (const entry of entries) {
    if (entry.isFile() && isPlainName(entry.name)) files.set(entry.name, await readFile(join(dir, entry.name)));
  }
  const cardBytes = files.get(CARD_FILE);
  if (cardBytes === undefined) throw new SluiceError('MODEL_INVALID', `${dir} has no ${CARD_FILE}; a version is the model file and the card that training wrote with it.`);

  let card: ModelCard;
  try {
    card = parseCard(cardBytes.toString('utf8'), join(dir, CARD_FILE), ctx.pipeline.plugin.model.monitoredNames);
  } catch (error) {
    throw new SluiceError('MODEL_INVALID', errorMessage(error), { cause: error });
  }
  if (card.pipeline !== kind) {
    throw new SluiceError('MODEL_INVALID', `${dir} holds a model for pipeline ${card.pipeline}, not ${kind}; register it with --pipeline ${card.pipeline}.`);
  }
  if (!isPlainName(card.version)) throw new SluiceError('MODEL_INVALID', `The card's version '${card.version}' is not a valid name: use letters, digits, '.', '_' and '-' only.`);
  if (card.reference.examples === undefined) {
    throw new SluiceError(
      'MODEL_INVALID',
      `The card in ${dir} has no reference examples (reference.examples: feature rows and the probabilities training computed for them), so nothing proves what the file computes. Train it with training/train.py, which writes them.`,
    );
  }

  try {
    const model = await loadModelFromFiles(dir, card.version, files, signatureOf(ctx.pipeline));
    await model.close();
  } catch (error) {
    if (isSluiceError(error, 'MODEL_LOAD_FAILED')) throw new SluiceError('MODEL_INVALID', errorMessage(error), { cause: error });
    throw error;
  }
  await ctx.store.create(kind, card.version, files);
  return { version: card.version, pipeline: kind, sha256: card.onnx.sha256, location: ctx.store.location, drill: card.drill === true };
}

// ---------------------------------------------------------------- list

export interface ListedVersion {
  version: string;
  aliases: ModelAlias[];
  drill: boolean;
  created_at: string | null;
  /** The version served when no champion record exists (models/<kind>/ACTIVE). */
  default: boolean;
  metrics: Record<string, number> | null;
  /** Why the card could not be read, when it could not. */
  problem?: string;
}

/** The version an alias names, with the default version standing in for a champion no record names yet. */
function servedBy(state: ControlState, pipeline: string, alias: ModelAlias, defaultVersion: string | null): string | null {
  const record = state.get(pipeline, aliasSetting(alias));
  if (record !== undefined) return record.value || null;
  return alias === 'champion' ? defaultVersion : null;
}

export async function listVersions(ctx: ModelContext): Promise<ListedVersion[]> {
  const kind = ctx.pipeline.plugin.kind;
  const [versions, defaultVersion, state] = await Promise.all([ctx.store.versions(kind), ctx.store.defaultVersion(kind), controlState(ctx)]);
  const aliases = new Map<string, ModelAlias[]>();
  for (const alias of MODEL_ALIASES) {
    const version = servedBy(state, ctx.pipeline.name, alias, defaultVersion);
    if (version !== null) aliases.set(version, [...(aliases.get(version) ?? []), alias]);
  }
  return Promise.all(
    versions.map(async (version): Promise<ListedVersion> => {
      const base = { version, aliases: aliases.get(version) ?? [], default: version === defaultVersion };
      try {
        const bytes = await ctx.store.read(kind, version, CARD_FILE);
        if (bytes === null) throw new Error(`no ${CARD_FILE}`);
        const card = parseCard(bytes.toString('utf8'), `${kind}/${version}/${CARD_FILE}`);
        const holdout = Object.fromEntries(Object.entries(card.metrics.holdout).filter(([, value]) => typeof value === 'number')) as Record<string, number>;
        return { ...base, drill: card.drill === true, created_at: card.created_at, metrics: holdout };
      } catch (error) {
        return { ...base, drill: false, created_at: null, metrics: null, problem: errorMessage(error).split('\n')[0]! };
      }
    }),
  );
}

// ---------------------------------------------------------------- promote, rollback

export interface AliasChange {
  pipeline: string;
  alias: ModelAlias;
  from: string | null;
  to: string;
  changed: boolean;
  reason: string | null;
}

/** Fails with MODEL_VERSION_UNKNOWN naming the versions there are, unless `version` is in the store. */
async function requireVersion(ctx: ModelContext, version: string): Promise<void> {
  const kind = ctx.pipeline.plugin.kind;
  const versions = isPlainName(version) ? await ctx.store.versions(kind) : [];
  if (!versions.includes(version)) {
    throw new SluiceError('MODEL_VERSION_UNKNOWN', `Unknown model version '${version}' of ${kind} in ${ctx.store.location}. Versions: ${versions.join(', ') || 'none'}; register it first (sluice model register).`);
  }
}

/** Loads a version as a score instance would, so a promotion never names what cannot be served. */
async function verifyServable(ctx: ModelContext, version: string): Promise<ModelCard> {
  try {
    const model = await loadModelFromStore(ctx.store, ctx.pipeline.plugin.kind, version, signatureOf(ctx.pipeline));
    await model.close();
    return model.card;
  } catch (error) {
    if (isSluiceError(error, 'MODEL_LOAD_FAILED')) throw new SluiceError('MODEL_INVALID', `${version} cannot be served: ${errorMessage(error)}`, { cause: error });
    throw error;
  }
}

/** Writes an alias record under the current control contract (registered first, so the history field is kept). */
async function writeAlias(ctx: ModelContext, setting: ControlSetting): Promise<void> {
  const catalog = new SchemaCatalog(ctx.connections.schemaRegistryUrl);
  await catalog.register(CONTROL_SUBJECT, controlSchema());
  await writeControl({ brokers: ctx.connections.kafkaBrokers, catalog, setting });
}

export async function promote(ctx: ModelContext, version: string, options: { alias?: ModelAlias; reason?: string; drill?: boolean } = {}): Promise<AliasChange> {
  const alias = options.alias ?? 'champion';
  const reason = options.reason ?? null;
  await requireVersion(ctx, version);
  const card = await verifyServable(ctx, version);
  if (card.drill === true && options.drill !== true) {
    throw new SluiceError('MODEL_DRILL_REFUSED', `${version} is a drill model (its card says "drill": true): it exists to rehearse rollback and replay, not to decide. Pass --drill to promote it on purpose.`);
  }
  const kind = ctx.pipeline.plugin.kind;
  const [state, defaultVersion] = await Promise.all([controlState(ctx), ctx.store.defaultVersion(kind)]);
  const record = state.get(ctx.pipeline.name, aliasSetting(alias));
  const from = servedBy(state, ctx.pipeline.name, alias, defaultVersion);
  if (from === version) return { pipeline: ctx.pipeline.name, alias, from, to: version, changed: false, reason };
  // With no record yet, the champion being replaced is the default version: rollback must be able to return to it.
  const current = record ?? (from === null ? undefined : { pipeline: ctx.pipeline.name, setting: aliasSetting(alias), value: from, reason: null, updated_by: 'ACTIVE', updated_at: 0 });
  await writeAlias(ctx, promotedAlias({ pipeline: ctx.pipeline.name, alias, version, current, reason, by: ctx.by, now: Date.now() }));
  return { pipeline: ctx.pipeline.name, alias, from, to: version, changed: true, reason };
}

/** The champion back on the version it named before the last promotion. */
export async function rollback(ctx: ModelContext, options: { reason?: string } = {}): Promise<AliasChange> {
  const reason = options.reason ?? null;
  const state = await controlState(ctx);
  const current = state.get(ctx.pipeline.name, aliasSetting('champion'));
  const next = rolledBackAlias({ current, reason, by: ctx.by, now: Date.now() });
  if (next === null) {
    throw new SluiceError('MODEL_NO_PREVIOUS', `The champion of ${ctx.pipeline.name} has no previous version to roll back to (it was never promoted, or every earlier promotion was rolled back already).`);
  }
  await requireVersion(ctx, next.value);
  await verifyServable(ctx, next.value);
  await writeAlias(ctx, next);
  return { pipeline: ctx.pipeline.name, alias: 'champion', from: current?.value || null, to: next.value, changed: true, reason };
}

// ---------------------------------------------------------------- commands

const describeChange = (change: AliasChange) =>
  change.changed
    ? `${change.alias} of ${change.pipeline}: ${change.from ?? '(none)'} -> ${change.to}${change.reason ? ` (${change.reason})` : ''}\n`
    : `${change.alias} of ${change.pipeline} is already ${change.to}; nothing changed\n`;

function parseAlias(value: string): ModelAlias {
  if (!(MODEL_ALIASES as readonly string[]).includes(value)) throw new SluiceError('CONFIG_INVALID', `Unknown alias "${value}": use ${MODEL_ALIASES.join(' or ')}.`);
  return value as ModelAlias;
}

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('model versions and aliases: register, list, promote, rollback');

  model
    .command('register')
    .description('validate a version directory (card, checksum, signature, reference examples) and add it to the model store')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .requiredOption('--from <dir>', 'the version directory (model.onnx and card.json)')
    .option('--json', 'print the result as JSON')
    .action(async (options: { pipeline: string; from: string; json?: boolean }) => {
      const registered = await registerVersion(modelContext(options.pipeline), options.from);
      process.stdout.write(
        options.json
          ? `${JSON.stringify(registered)}\n`
          : `registered ${registered.version} of ${registered.pipeline} in ${registered.location} (sha256 ${registered.sha256}${registered.drill ? ', drill' : ''})\n`,
      );
    });

  model
    .command('list')
    .description('every version of the pipeline with its aliases, creation time, held-out metrics and whether it is a drill')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .option('--json', 'print one JSON array')
    .action(async (options: { pipeline: string; json?: boolean }) => {
      const versions = await listVersions(modelContext(options.pipeline));
      if (options.json) {
        process.stdout.write(`${JSON.stringify(versions)}\n`);
        return;
      }
      for (const v of versions) {
        const tags = [...v.aliases, ...(v.default ? ['default'] : []), ...(v.drill ? ['DRILL'] : [])];
        const auc = v.metrics?.auc === undefined ? '' : `  auc=${v.metrics.auc.toFixed(4)}`;
        process.stdout.write(`${v.version}  ${v.created_at ?? '-'}  [${tags.join(', ')}]${auc}${v.problem ? `  unreadable: ${v.problem}` : ''}\n`);
      }
    });

  model
    .command('promote')
    .description('point an alias (champion by default) at a version; every score instance follows within 2 s')
    .argument('<version>', 'a registered version')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .option('--alias <alias>', 'champion (serves) or challenger (scored in shadow)', parseAlias, 'champion' as ModelAlias)
    .option('--reason <text>', 'why, for the audit trail')
    .option('--drill', 'allow a drill model (game days only)')
    .action(async (version: string, options: { pipeline: string; alias: ModelAlias; reason?: string; drill?: boolean }) => {
      process.stdout.write(describeChange(await promote(modelContext(options.pipeline), version, options)));
    });

  model
    .command('rollback')
    .description('put the champion back on the version it named before the last promotion')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .option('--reason <text>', 'why, for the audit trail')
    .action(async (options: { pipeline: string; reason?: string }) => {
      process.stdout.write(describeChange(await rollback(modelContext(options.pipeline), options)));
    });
}
