/**
 * `sluice model register` (cli/model.ts) against a local model store in a
 * scratch directory, and the drill model it ships: what an ML engineer sees
 * when a version is accepted or refused. No broker: register never touches
 * the control topic.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ModelContext, modelContext, registerVersion, signatureOf } from '../../cli/model.ts';
import { LocalModelStore } from '../../connectors/models/local.ts';
import { loadModel, loadModelFromStore, MODELS_ROOT, type ScoringModel } from '../../connectors/onnx/model.ts';
import { isSluiceError } from '../../lib/errors.ts';
import { featuresOf } from '../../pipelines/signup-risk/features.ts';
import { generateSignups } from '../../pipelines/signup-risk/generator.ts';

const KIND = 'signup-risk';
const DRILL = 'signup-risk-drill-inverted';
const shipped = (version: string) => join(MODELS_ROOT, KIND, version);

let scratch: string;
let store: LocalModelStore;
let ctx: ModelContext;
let champion: string;

/** A copy of a shipped version under `name` in the scratch area, with its card edited by `edit`. */
// biome-ignore lint/suspicious/noExplicitAny: the tests edit arbitrary card fields to break them.
async function variant(name: string, from: string, edit: (card: any) => void = () => {}): Promise<string> {
  const dir = join(scratch, 'incoming', name);
  await cp(shipped(from), dir, { recursive: true });
  const card = JSON.parse(await readFile(join(dir, 'card.json'), 'utf8'));
  card.version = name;
  edit(card);
  await writeFile(join(dir, 'card.json'), JSON.stringify(card));
  return dir;
}

const refusedWith = (code: string) => (error: unknown) => {
  assert.ok(isSluiceError(error), `expected a SluiceError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return true;
};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'sluice-model-registry-'));
  store = new LocalModelStore(join(scratch, 'store'));
  ctx = { ...modelContext(KIND, { ...process.env, SLUICE_MODELS_DIR: store.root }), store };
  champion = (await readFile(join(MODELS_ROOT, KIND, 'ACTIVE'), 'utf8')).trim();
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('model register', () => {
  it('stores a valid version byte for byte, and refuses the same version twice (versions are immutable)', async () => {
    const registered = await registerVersion(ctx, shipped(DRILL));
    assert.equal(registered.version, DRILL);
    assert.equal(registered.drill, true);
    assert.deepEqual(await store.versions(KIND), [DRILL]);
    for (const file of ['model.onnx', 'card.json']) {
      assert.deepEqual(await store.read(KIND, DRILL, file), await readFile(join(shipped(DRILL), file)), `${file} is stored as it was`);
    }
    const model = await loadModelFromStore(store, KIND, DRILL, signatureOf(ctx.pipeline));
    await model.close();
    await assert.rejects(registerVersion(ctx, shipped(DRILL)), refusedWith('MODEL_VERSION_EXISTS'));
  });

  it('refuses a model file that does not match the checksum in its card', async () => {
    const dir = await variant('corrupt-checksum', DRILL);
    const bytes = await readFile(join(dir, 'model.onnx'));
    bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0xff;
    await writeFile(join(dir, 'model.onnx'), bytes);
    await assert.rejects(registerVersion(ctx, dir), refusedWith('MODEL_INVALID'));
    assert.ok(!(await store.versions(KIND)).includes('corrupt-checksum'), 'nothing of a refused version is stored');
  });

  it('refuses a model whose input is not the pipeline signature, even with a consistent card', async () => {
    // ticket-triage's classifier takes 4096 hashed features and returns 5 classes: a real ONNX file, the wrong signature.
    const dir = await variant('wrong-signature', DRILL);
    const triage = (await readFile(join(MODELS_ROOT, 'ticket-triage', 'ACTIVE'), 'utf8')).trim();
    const foreign = await readFile(join(MODELS_ROOT, 'ticket-triage', triage, 'model.onnx'));
    await writeFile(join(dir, 'model.onnx'), foreign);
    const card = JSON.parse(await readFile(join(dir, 'card.json'), 'utf8'));
    card.onnx.sha256 = createHash('sha256').update(foreign).digest('hex');
    await writeFile(join(dir, 'card.json'), JSON.stringify(card));
    await assert.rejects(registerVersion(ctx, dir), (error: unknown) => refusedWith('MODEL_INVALID')(error) && /shape other than \[N, 15\]/.test((error as Error).message));
  });

  it('refuses a card whose reference scores the file does not reproduce within 1e-6, and accepts float noise below it', async () => {
    const off = await variant('reference-off', DRILL, (card) => {
      card.reference.examples.probabilities[3][1] += 1e-5;
    });
    await assert.rejects(registerVersion(ctx, off), (error: unknown) => refusedWith('MODEL_INVALID')(error) && /reference example 3/.test((error as Error).message));
    const noise = await variant('reference-noise', DRILL, (card) => {
      card.reference.examples.probabilities[3][1] += 5e-7;
    });
    assert.equal((await registerVersion(ctx, noise)).version, 'reference-noise');
  });

  it('refuses a card without reference examples, one for another pipeline, and features the code does not compute', async () => {
    const bare = await variant('no-examples', DRILL, (card) => {
      delete card.reference.examples;
    });
    await assert.rejects(registerVersion(ctx, bare), refusedWith('MODEL_INVALID'));
    const other = await variant('other-pipeline', DRILL, (card) => {
      card.pipeline = 'ticket-triage';
    });
    await assert.rejects(registerVersion(ctx, other), refusedWith('MODEL_INVALID'));
    const features = await variant('other-features', DRILL, (card) => {
      card.features = [...card.features].reverse();
    });
    await assert.rejects(registerVersion(ctx, features), refusedWith('MODEL_INVALID'));
    const empty = join(scratch, 'incoming', 'empty');
    await mkdir(empty, { recursive: true });
    await assert.rejects(registerVersion(ctx, empty), refusedWith('MODEL_INVALID'));
  });
});

describe('the shipped drill model', () => {
  let drill: ScoringModel;
  let real: ScoringModel;
  before(async () => {
    drill = await loadModel(shipped(DRILL), signatureOf(ctx.pipeline));
    real = await loadModel(shipped(champion), signatureOf(ctx.pipeline));
  });
  after(async () => {
    await drill?.close();
    await real?.close();
  });

  it('is marked as a drill and wraps the current default version', () => {
    assert.equal(drill.card.drill, true);
    assert.equal((drill.card as { wraps?: { version: string } }).wraps?.version, champion);
    assert.notEqual(real.card.drill, true);
  });

  it('scores 1 - the champion score for every input', async () => {
    const rows = [...generateSignups({ seed: 9_001, count: 2_000, startMs: Date.UTC(2026, 11, 1) })].map((e) => featuresOf(e.payload));
    const inverted = await drill.predict(rows);
    const original = await real.predict(rows);
    let worst = 0;
    for (let r = 0; r < rows.length; r++) worst = Math.max(worst, Math.abs(inverted[r * 2 + 1]! - (1 - original[r * 2 + 1]!)));
    assert.ok(worst <= 1e-6, `largest gap from 1 - champion: ${worst}`);
    assert.ok(new Set(Array.from({ length: 50 }, (_, r) => inverted[r * 2 + 1])).size > 10, 'scores vary with the input');
  });
});
