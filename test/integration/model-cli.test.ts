/**
 * `sluice model register | list | promote | rollback` as an ML engineer runs
 * them: real processes, the real control topic, a model store in a scratch
 * directory (SLUICE_MODELS_DIR) and a pipeline instance of the test's own, so
 * its alias records touch no one else's.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MODELS_ROOT } from '../../connectors/onnx/model.ts';
import { sluiceSync, uniqueName } from '../helpers.ts';

const KIND = 'signup-risk';
const DRILL = 'signup-risk-drill-inverted';

interface Listed {
  version: string;
  aliases: string[];
  drill: boolean;
  created_at: string | null;
  default: boolean;
}

describe('sluice model', () => {
  const pipeline = `${KIND}-${uniqueName('it-model-cli')}`;
  let scratch: string;
  let champion: string;
  let env: Record<string, string>;
  const run = (...args: string[]) => sluiceSync(['model', ...args], env);
  const list = (): Listed[] => {
    const result = run('list', '--pipeline', pipeline, '--json');
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as Listed[];
  };
  const aliasesOf = (versions: Listed[]) => Object.fromEntries(versions.map((v) => [v.version, v.aliases]));

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'sluice-model-cli-'));
    champion = (await readFile(join(MODELS_ROOT, KIND, 'ACTIVE'), 'utf8')).trim();
    await cp(join(MODELS_ROOT, KIND, champion), join(scratch, KIND, champion), { recursive: true });
    await writeFile(join(scratch, KIND, 'ACTIVE'), `${champion}\n`);
    env = { SLUICE_MODELS_DIR: scratch, SLUICE_ACTOR: 'it-test' };
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('registers a version, and lists every version with its aliases and whether it is a drill', () => {
    const registered = run('register', '--pipeline', pipeline, '--from', join(MODELS_ROOT, KIND, DRILL));
    assert.equal(registered.status, 0, registered.stderr);
    assert.match(registered.stdout, new RegExp(`registered ${DRILL} of ${KIND}`));
    const again = run('register', '--pipeline', pipeline, '--from', join(MODELS_ROOT, KIND, DRILL));
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /MODEL_VERSION_EXISTS/);

    const versions = list();
    assert.deepEqual(versions.map((v) => v.version).sort(), [champion, DRILL].sort());
    assert.deepEqual(aliasesOf(versions), { [champion]: ['champion'], [DRILL]: [] }, 'without a record, the default version is the champion');
    assert.deepEqual(Object.fromEntries(versions.map((v) => [v.version, v.drill])), { [champion]: false, [DRILL]: true });
    assert.ok(versions.every((v) => typeof v.created_at === 'string'));
  });

  it('refuses a drill version without --drill, an unknown version and an unknown pipeline, naming them', () => {
    const drill = run('promote', DRILL, '--pipeline', pipeline);
    assert.notEqual(drill.status, 0);
    assert.match(drill.stderr, /MODEL_DRILL_REFUSED/);
    const unknown = run('promote', 'no-such-version', '--pipeline', pipeline);
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /MODEL_VERSION_UNKNOWN.*no-such-version/);
    const nowhere = run('promote', DRILL, '--pipeline', 'no-such-pipeline', '--drill');
    assert.notEqual(nowhere.status, 0);
    assert.match(nowhere.stderr, /PIPELINE_UNKNOWN.*no-such-pipeline/);
    const noPrevious = run('rollback', '--pipeline', pipeline);
    assert.notEqual(noPrevious.status, 0, 'nothing to roll back to before any promotion');
    assert.match(noPrevious.stderr, /MODEL_NO_PREVIOUS/);
    assert.deepEqual(aliasesOf(list()), { [champion]: ['champion'], [DRILL]: [] }, 'nothing changed');
  });

  it('promotes (champion by default, challenger on request) and rolls back to the previous champion, saying what changed', () => {
    const promoted = run('promote', DRILL, '--pipeline', pipeline, '--drill', '--reason', 'game day');
    assert.equal(promoted.status, 0, promoted.stderr);
    assert.equal(promoted.stdout, `champion of ${pipeline}: ${champion} -> ${DRILL} (game day)\n`);
    assert.deepEqual(aliasesOf(list()), { [champion]: [], [DRILL]: ['champion'] });

    const same = run('promote', DRILL, '--pipeline', pipeline, '--drill');
    assert.equal(same.status, 0, same.stderr);
    assert.match(same.stdout, /already/);

    const challenger = run('promote', champion, '--pipeline', pipeline, '--alias', 'challenger');
    assert.equal(challenger.status, 0, challenger.stderr);
    assert.deepEqual(aliasesOf(list()), { [champion]: ['challenger'], [DRILL]: ['champion'] });

    const back = run('rollback', '--pipeline', pipeline, '--reason', 'drill over');
    assert.equal(back.status, 0, back.stderr);
    assert.equal(back.stdout, `champion of ${pipeline}: ${DRILL} -> ${champion} (drill over)\n`);
    assert.deepEqual(aliasesOf(list()), { [champion]: ['champion', 'challenger'], [DRILL]: [] });
  });
});
