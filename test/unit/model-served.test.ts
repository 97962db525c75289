/**
 * What a score instance serves as alias records arrive (processors/score/served.ts),
 * with the real control state, a local model store in a scratch directory and
 * the shipped models; and the alias history that rollback relies on. The
 * broker-backed path is test/integration/model-lifecycle.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalModelStore } from '../../connectors/models/local.ts';
import { MODELS_ROOT } from '../../connectors/onnx/model.ts';
import { SluiceError } from '../../lib/errors.ts';
import { createLogger } from '../../lib/log.ts';
import { controlKey } from '../../lib/contracts.ts';
import { featuresOf } from '../../pipelines/signup-risk/features.ts';
import { generateSignups } from '../../pipelines/signup-risk/generator.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import { aliasSetting, type ControlSetting, ControlState, type ModelAlias, promotedAlias, rolledBackAlias } from '../../processors/runtime/control.ts';
import { ServedModels } from '../../processors/score/served.ts';

const KIND = 'signup-risk';
const DRILL = 'signup-risk-drill-inverted';
const PIPELINE = 'signup-risk-served-test';
const signature = { featureNames: signupRisk.model.featureNames, classes: signupRisk.model.output.classes, monitoredNames: signupRisk.model.monitoredNames };
const rows = [...generateSignups({ seed: 5, count: 8, startMs: 0 })].map((e) => featuresOf(e.payload));

let scratch: string;
let store: LocalModelStore;
let champion: string;

function record(alias: ModelAlias, value: string, pipeline = PIPELINE): ControlSetting {
  return { pipeline, setting: aliasSetting(alias), value, reason: null, updated_by: 'test', updated_at: Date.now(), history: [] };
}

function start(control: ControlState) {
  const events: string[] = [];
  const served = ServedModels.start({
    pipeline: PIPELINE,
    kind: KIND,
    store,
    signature,
    control,
    defaultVersion: champion,
    logger: createLogger({ test: 'served' }, 'silent'),
    metrics: {
      setInfo: (alias, version) => events.push(`info ${alias}=${version}`),
      loadFailed: (alias, version, code) => events.push(`failed ${alias}=${version} ${code}`),
      swapped: (alias) => events.push(`swapped ${alias}`),
    },
  });
  return { served, events };
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'sluice-served-'));
  store = new LocalModelStore(scratch);
  champion = (await readFile(join(MODELS_ROOT, KIND, 'ACTIVE'), 'utf8')).trim();
  for (const version of [champion, DRILL]) await cp(join(MODELS_ROOT, KIND, version), join(scratch, KIND, version), { recursive: true });
  // A version whose file was altered after its card was written: it must never be served.
  await cp(join(MODELS_ROOT, KIND, DRILL), join(scratch, KIND, 'tampered'), { recursive: true });
  const card = JSON.parse(await readFile(join(scratch, KIND, 'tampered', 'card.json'), 'utf8'));
  await writeFile(join(scratch, KIND, 'tampered', 'card.json'), JSON.stringify({ ...card, version: 'tampered' }));
  const bytes = await readFile(join(scratch, KIND, 'tampered', 'model.onnx'));
  bytes[100] = bytes[100]! ^ 0x01;
  await writeFile(join(scratch, KIND, 'tampered', 'model.onnx'), bytes);
  // A consistent card over another pipeline's model: the checksum holds, the signature ([N, 4096] in, 5 classes out) does not.
  await cp(join(MODELS_ROOT, KIND, DRILL), join(scratch, KIND, 'foreign'), { recursive: true });
  const triage = (await readFile(join(MODELS_ROOT, 'ticket-triage', 'ACTIVE'), 'utf8')).trim();
  const foreign = await readFile(join(MODELS_ROOT, 'ticket-triage', triage, 'model.onnx'));
  await writeFile(join(scratch, KIND, 'foreign', 'model.onnx'), foreign);
  card.onnx.sha256 = createHash('sha256').update(foreign).digest('hex');
  await writeFile(join(scratch, KIND, 'foreign', 'card.json'), JSON.stringify({ ...card, version: 'foreign' }));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('served models', () => {
  it('serves the default without an alias record, swaps to a promoted version, and never to a tampered one', async () => {
    const control = new ControlState();
    const { served: starting, events } = start(control);
    const served = await starting;
    assert.deepEqual(served.versions(), { champion, challenger: null });

    const before = served.lease();
    control.apply(controlKey(PIPELINE, aliasSetting('champion')), record('champion', DRILL));
    await served.settled();
    assert.deepEqual(served.versions(), { champion: DRILL, challenger: null });
    // A batch that started before the swap finishes on the model it started with, still open.
    assert.equal(before.champion.version, champion);
    const old = await before.champion.predict(rows);
    before.release();
    const after = served.lease();
    const now = await after.champion.predict(rows);
    after.release();
    for (let r = 0; r < rows.length; r++) assert.ok(Math.abs(now[r * 2 + 1]! - (1 - old[r * 2 + 1]!)) < 1e-6, 'the drill inverts what the champion scored');
    await assert.rejects(before.champion.predict(rows), /closed/, 'the replaced model is closed once no batch holds it');

    control.apply(controlKey(PIPELINE, aliasSetting('champion')), record('champion', 'tampered'));
    await served.settled();
    assert.deepEqual(served.versions(), { champion: DRILL, challenger: null }, 'the tampered version is refused, the served one kept');
    assert.ok(events.includes('failed champion=tampered MODEL_LOAD_FAILED'), events.join('; '));
    control.apply(controlKey(PIPELINE, aliasSetting('challenger')), record('challenger', 'foreign'));
    await served.settled();
    assert.deepEqual(served.versions(), { champion: DRILL, challenger: null }, 'a model of the wrong signature is not served, not even in shadow');
    assert.ok(events.includes('failed challenger=foreign MODEL_LOAD_FAILED'), events.join('; '));

    control.apply(controlKey('signup-risk-someone-else', aliasSetting('champion')), record('champion', champion, 'signup-risk-someone-else'));
    await served.settled();
    assert.equal(served.versions().champion, DRILL, "another pipeline instance's alias is not ours");
    await served.close();
  });

  it('adds and removes a challenger, and the newest of quick promotions wins', async () => {
    const control = new ControlState();
    const served = await start(control).served;
    control.apply(controlKey(PIPELINE, aliasSetting('challenger')), record('challenger', DRILL));
    await served.settled();
    const lease = served.lease();
    assert.equal(lease.champion.version, champion);
    assert.equal(lease.challenger?.version, DRILL);
    lease.release();
    control.apply(controlKey(PIPELINE, aliasSetting('challenger')), record('challenger', ''));
    await served.settled();
    assert.equal(served.lease().challenger, null);

    control.apply(controlKey(PIPELINE, aliasSetting('champion')), record('champion', DRILL));
    control.apply(controlKey(PIPELINE, aliasSetting('champion')), record('champion', champion));
    await served.settled();
    assert.equal(served.versions().champion, champion);
    await served.close();
  });

  it('waits out a model store outage during a promotion, then swaps; the outage is not counted as a refusal', async () => {
    const control = new ControlState();
    let failures = 2;
    const flaky = Object.create(store) as LocalModelStore;
    flaky.read = async (kind, version, file) => {
      if (version === DRILL && failures > 0) {
        failures--;
        throw new SluiceError('MODEL_STORE_UNAVAILABLE', 'storage briefly down');
      }
      return store.read(kind, version, file);
    };
    const events: string[] = [];
    const served = await ServedModels.start({
      pipeline: PIPELINE,
      kind: KIND,
      store: flaky,
      signature,
      control,
      defaultVersion: champion,
      logger: createLogger({ test: 'served' }, 'silent'),
      metrics: { setInfo: () => {}, loadFailed: (alias, version, code) => events.push(`failed ${alias}=${version} ${code}`), swapped: () => {} },
    });
    control.apply(controlKey(PIPELINE, aliasSetting('champion')), record('champion', DRILL));
    await served.settled();
    assert.equal(failures, 0, 'the outage happened');
    assert.equal(served.versions().champion, DRILL);
    assert.deepEqual(events, []);
    await served.close();
  });

  it('starts on the default when the champion record names a version that cannot be served', async () => {
    const control = new ControlState();
    control.apply(controlKey(PIPELINE, aliasSetting('champion')), record('champion', 'tampered'), { quiet: true });
    const { served: starting, events } = start(control);
    const served = await starting;
    assert.equal(served.versions().champion, champion);
    assert.ok(events.includes('failed champion=tampered MODEL_LOAD_FAILED'));
    await served.close();
  });
});

describe('alias history', () => {
  it('promote pushes the version it replaces; rollback pops it, back to the first champion', () => {
    const at = { pipeline: PIPELINE, alias: 'champion' as const, reason: 'test', by: 'ana', now: 1 };
    const first = promotedAlias({ ...at, version: 'v2', current: { ...record('champion', 'v1'), updated_by: 'ACTIVE' } });
    assert.deepEqual([first.value, first.history], ['v2', ['v1']]);
    const second = promotedAlias({ ...at, version: 'v3', current: first });
    assert.deepEqual([second.value, second.history, second.updated_by], ['v3', ['v2', 'v1'], 'ana']);
    const back = rolledBackAlias({ current: second, reason: 'bad', by: 'bo', now: 2 });
    assert.deepEqual([back?.value, back?.history, back?.reason, back?.updated_by], ['v2', ['v1'], 'bad', 'bo']);
    const again = rolledBackAlias({ current: back!, reason: null, by: 'bo', now: 3 });
    assert.deepEqual([again?.value, again?.history], ['v1', []]);
    assert.equal(rolledBackAlias({ current: again!, reason: null, by: 'bo', now: 4 }), null, 'nothing before the first champion');
    assert.equal(rolledBackAlias({ current: undefined, reason: null, by: 'bo', now: 4 }), null);
  });
});
