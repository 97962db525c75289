/**
 * The models a score instance serves, swapped while it runs: the champion
 * (scores every record, and its score decides) and the challenger (scored in
 * shadow, never decides), as the control topic's alias records name them.
 *
 * Lifecycle rules, the reasons for this module:
 * - A new version is loaded and verified (card, sha256, signature, reference
 *   examples) beside the one serving; only a version that passed every check
 *   replaces it, so no record is scored by a half-loaded or unverified model.
 *   A version that fails is never served: the old one stays, the failure is
 *   logged with its error code and counted.
 * - The swap is a pointer change seen by the next batch: a batch leases the
 *   models it started with and keeps them to its end, and a replaced model is
 *   closed only when no batch holds it any more.
 * - Loads are serialized; a promotion that arrives during a load is loaded
 *   next, and the newest record always wins.
 * - A model store outage (a retriable error) is waited out with backoff, for
 *   up to 30 s, while the version is still the one wanted; the served model
 *   keeps scoring meanwhile.
 */
import type { ModelStore } from '../../connectors/models/store.ts';
import { loadModelFromStore, type ModelSignature, type ScoringModel } from '../../connectors/onnx/model.ts';
import { errorMessage, isSluiceError, SluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { retry } from '../../lib/retry.ts';
import { aliasSetting, type ControlState, MODEL_ALIASES, type ModelAlias } from '../runtime/control.ts';

/** What the instance reports about its models (prom-client instruments in production). */
export interface ServedMetrics {
  /** sluice_model_info{version, alias}: 1 for what is served. */
  setInfo(alias: ModelAlias, version: string | null): void;
  loadFailed(alias: ModelAlias, version: string, code: string): void;
  swapped(alias: ModelAlias, seconds: number): void;
}

/** How long a store outage is waited out before a promotion is given up (the served model stays). */
const STORE_OUTAGE_DEADLINE_MS = 30_000;

interface ServedArgs {
  /** The pipeline instance whose alias records are followed. */
  pipeline: string;
  /** The pipeline kind: the store's folder. */
  kind: string;
  store: ModelStore;
  signature: ModelSignature;
  control: ControlState;
  /** Served when no champion record exists: SLUICE_MODEL_VERSION, else the store's ACTIVE. */
  defaultVersion: string;
  logger: Logger;
  metrics: ServedMetrics;
}

interface Entry {
  model: ScoringModel;
  leases: number;
  retired: boolean;
}

/** The models one batch uses, from its start to its end. */
export interface Lease {
  champion: ScoringModel;
  challenger: ScoringModel | null;
  release(): void;
}

export class ServedModels {
  private readonly entries: Record<ModelAlias, Entry | null> = { champion: null, challenger: null };
  /** The version each alias should serve, as last read from the control state. */
  private readonly wanted: Record<ModelAlias, string | null> = { champion: null, challenger: null };
  private loading: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly stopped = new AbortController();

  private readonly args: ServedArgs;

  private constructor(args: ServedArgs) {
    this.args = args;
  }

  /**
   * Loads the champion the control topic names (the default version when it
   * names none, or names one that cannot be served) and the challenger, then
   * follows the control state. Throws MODEL_LOAD_FAILED only when not even the
   * default version can be served.
   */
  static async start(args: ServedArgs): Promise<ServedModels> {
    const served = new ServedModels(args);
    const champion = args.control.modelAlias(args.pipeline, 'champion');
    served.wanted.champion = champion;
    if (champion !== null) await served.apply('champion', champion);
    if (served.entries.champion === null) {
      let model: ScoringModel;
      try {
        model = await served.load(args.defaultVersion);
      } catch (error) {
        args.metrics.loadFailed('champion', args.defaultVersion, isSluiceError(error) ? error.code : 'MODEL_LOAD_FAILED');
        throw error;
      }
      served.entries.champion = { model, leases: 0, retired: false };
      args.metrics.setInfo('champion', args.defaultVersion);
      args.logger.info({ model_version: args.defaultVersion, alias: 'champion', source: champion === null ? 'default' : 'default, the alias could not be served' }, 'model loaded');
    }
    const challenger = args.control.modelAlias(args.pipeline, 'challenger');
    served.wanted.challenger = challenger;
    if (challenger !== null) await served.apply('challenger', challenger);
    args.control.onChange((setting) => {
      if (setting.pipeline !== args.pipeline) return;
      const alias = MODEL_ALIASES.find((a) => aliasSetting(a) === setting.setting);
      if (alias === undefined) return;
      served.wanted[alias] = setting.value || null;
      served.loading = served.loading
        .then(() => served.apply(alias, served.wanted[alias]))
        .catch((error: unknown) => args.logger.error({ err: errorMessage(error), alias }, 'model swap failed; keeping the served model'));
    });
    return served;
  }

  /** The versions served now, for logs and tests. */
  versions(): Record<ModelAlias, string | null> {
    return { champion: this.entries.champion?.model.version ?? null, challenger: this.entries.challenger?.model.version ?? null };
  }

  /** The models for one batch; call release() when the batch is done with them. */
  lease(): Lease {
    const champion = this.entries.champion!;
    const challenger = this.entries.challenger;
    champion.leases++;
    if (challenger) challenger.leases++;
    let released = false;
    return {
      champion: champion.model,
      challenger: challenger?.model ?? null,
      release: () => {
        if (released) return;
        released = true;
        this.unlease(champion);
        if (challenger) this.unlease(challenger);
      },
    };
  }

  /** Waits for any load under way (tests, shutdown). */
  settled(): Promise<void> {
    return this.loading;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopped.abort();
    await this.loading;
    for (const alias of MODEL_ALIASES) {
      const entry = this.entries[alias];
      this.entries[alias] = null;
      if (entry) this.retire(entry);
    }
  }

  private unlease(entry: Entry): void {
    entry.leases--;
    if (entry.retired && entry.leases === 0) void entry.model.close();
  }

  private retire(entry: Entry): void {
    entry.retired = true;
    if (entry.leases === 0) void entry.model.close();
  }

  private async load(version: string): Promise<ScoringModel> {
    try {
      return await loadModelFromStore(this.args.store, this.args.kind, version, this.args.signature);
    } catch (error) {
      throw isSluiceError(error) ? error : new SluiceError('MODEL_LOAD_FAILED', errorMessage(error), { cause: error });
    }
  }

  /** Serves `version` as `alias` (null: no challenger), or keeps what is served if it cannot be. */
  private async apply(alias: ModelAlias, version: string | null): Promise<void> {
    if (this.closed) return;
    // A newer record arrived while this one waited: only the newest is loaded.
    if (this.wanted[alias] !== version) return;
    const current = this.entries[alias];
    if ((current?.model.version ?? null) === version) return;
    if (version === null) {
      if (alias === 'champion') return; // a champion is never unset; the record is ignored
      this.entries.challenger = null;
      this.args.metrics.setInfo('challenger', null);
      if (current) this.retire(current);
      this.args.logger.info({ alias, from: current?.model.version }, 'challenger removed');
      return;
    }
    const started = performance.now();
    let model: ScoringModel;
    try {
      // A store outage (retriable) is waited out while this version is still the one wanted; anything else refuses it.
      model = await retry(() => this.load(version), {
        what: `loading model version ${version}`,
        logger: this.args.logger,
        signal: this.stopped.signal,
        deadlineMs: STORE_OUTAGE_DEADLINE_MS,
        retriable: (error) => isSluiceError(error) && error.retriable && this.wanted[alias] === version && !this.closed,
      });
    } catch (error) {
      this.args.metrics.loadFailed(alias, version, isSluiceError(error) ? error.code : 'MODEL_LOAD_FAILED');
      this.args.logger.error(
        { alias, model_version: version, code: isSluiceError(error) ? error.code : 'MODEL_LOAD_FAILED', err: errorMessage(error), keeping: current?.model.version ?? null },
        `model version ${version} refused for ${alias}; keeping ${current?.model.version ?? 'none'}`,
      );
      return;
    }
    if (this.closed) {
      await model.close();
      return;
    }
    this.entries[alias] = { model, leases: 0, retired: false };
    if (current) this.retire(current);
    const seconds = (performance.now() - started) / 1000;
    this.args.metrics.setInfo(alias, version);
    this.args.metrics.swapped(alias, seconds);
    this.args.logger.info({ alias, model_version: version, from: current?.model.version ?? null, load_ms: Math.round(seconds * 1000) }, `${alias} now serves ${version}`);
  }
}
