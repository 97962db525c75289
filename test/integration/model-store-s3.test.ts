/**
 * The S3 model store against a real S3-compatible server: listing, reading,
 * writing, 404s and the immutability of versions over the real protocol. (The
 * signatures themselves are checked against AWS's published test vectors in
 * test/unit/model-store.test.ts; s3rver, the server used here, checks access
 * key ids but not SigV4 signatures, MinIO checks both.) The local stack runs none, so this test needs one named by
 * SLUICE_TEST_S3_ENDPOINT and SLUICE_TEST_S3_BUCKET (with AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY); docs/models.md shows how to run s3rver (npm) or MinIO
 * for it. Without them it reports itself skipped and says why.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { modelContext, registerVersion, signatureOf } from '../../cli/model.ts';
import { S3ModelStore } from '../../connectors/models/s3.ts';
import { loadModelFromStore, MODELS_ROOT } from '../../connectors/onnx/model.ts';
import { isSluiceError } from '../../lib/errors.ts';
import { uniqueName } from '../helpers.ts';

const endpoint = process.env.SLUICE_TEST_S3_ENDPOINT;
const bucket = process.env.SLUICE_TEST_S3_BUCKET;
const credentials = { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '' };
const skip = endpoint && bucket && credentials.accessKeyId ? false : 'no S3-compatible server: set SLUICE_TEST_S3_ENDPOINT, SLUICE_TEST_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY';
const DRILL = 'signup-risk-drill-inverted';

describe('the S3 model store', { skip }, () => {
  const prefix = `${uniqueName('sluice-test')}/`;
  const store = () => new S3ModelStore({ endpoint: endpoint!, bucket: bucket!, prefix, region: 'us-east-1', credentials });

  it('registers a version, lists and loads it, and refuses to overwrite it', async () => {
    const s3 = store();
    const ctx = { ...modelContext('signup-risk'), store: s3 };
    assert.deepEqual(await s3.versions('signup-risk'), []);
    const registered = await registerVersion(ctx, join(MODELS_ROOT, 'signup-risk', DRILL));
    assert.equal(registered.location, `s3://${bucket}/${prefix}`);
    assert.deepEqual(await s3.versions('signup-risk'), [DRILL]);
    assert.deepEqual(await s3.read('signup-risk', DRILL, 'model.onnx'), await readFile(join(MODELS_ROOT, 'signup-risk', DRILL, 'model.onnx')));
    assert.equal(await s3.read('signup-risk', DRILL, 'nothing.bin'), null);
    assert.equal(await s3.defaultVersion('signup-risk'), null);
    const model = await loadModelFromStore(s3, 'signup-risk', DRILL, signatureOf(ctx.pipeline));
    assert.equal(model.version, DRILL);
    await model.close();
    await assert.rejects(registerVersion(ctx, join(MODELS_ROOT, 'signup-risk', DRILL)), (e: unknown) => isSluiceError(e, 'MODEL_VERSION_EXISTS'));
  });

  it('is refused with a clear, non-retriable error when the credentials are not the server\'s', async () => {
    const wrong = new S3ModelStore({ endpoint: endpoint!, bucket: bucket!, prefix, region: 'us-east-1', credentials: { accessKeyId: 'NOT-A-KEY', secretAccessKey: 'not-the-secret' } });
    await assert.rejects(wrong.versions('signup-risk'), (e: unknown) => isSluiceError(e, 'MODEL_STORE_UNAVAILABLE') && /403/.test(e.message) && e.retriable === false);
  });
});
