/**
 * The model store: the local-directory backend as the CLI and the score stage
 * use it, the configuration from the environment, and the SigV4 signing of the
 * S3 backend checked against AWS's published test suite and S3's worked
 * examples (a real S3-compatible server: test/integration/model-store-s3.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { modelStoreFromEnv } from '../../connectors/models/config.ts';
import { LocalModelStore } from '../../connectors/models/local.ts';
import { S3ModelStore } from '../../connectors/models/s3.ts';
import { EMPTY_SHA256, signRequest } from '../../connectors/models/sigv4.ts';
import { isSluiceError } from '../../lib/errors.ts';

describe('SigV4 signing (AWS test suite, service "service", 2015-08-30T12:36:00Z)', () => {
  const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
  const scope = 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request';
  const cases: Array<{ name: string; method: string; url: string; headers: Record<string, string>; want: string }> = [
    { name: 'get-vanilla', method: 'GET', url: 'https://example.amazonaws.com/', headers: {}, want: 'SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31' },
    { name: 'post-vanilla', method: 'POST', url: 'https://example.amazonaws.com/', headers: {}, want: 'SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b' },
    {
      name: 'get-vanilla-query-order-key-case',
      method: 'GET',
      url: 'https://example.amazonaws.com/?Param2=value2&Param1=value1',
      headers: {},
      want: 'SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500',
    },
    {
      name: 'post-header-value-case',
      method: 'POST',
      url: 'https://example.amazonaws.com/',
      headers: { 'My-Header1': 'VALUE1' },
      want: 'SignedHeaders=host;my-header1;x-amz-date, Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d',
    },
    {
      name: 'get-header-value-trim',
      method: 'GET',
      url: 'https://example.amazonaws.com/',
      headers: { 'My-Header1': ' value1', 'My-Header2': '"a   b   c"' },
      want: 'SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const headers = signRequest(
        { method: c.method, url: new URL(c.url), headers: c.headers, payloadHash: EMPTY_SHA256, region: 'us-east-1', service: 'service', now: new Date(Date.UTC(2015, 7, 30, 12, 36, 0)) },
        credentials,
      );
      assert.equal(headers.authorization, `${scope}, ${c.want}`);
      assert.equal(headers['x-amz-date'], '20150830T123600Z');
    });
  }

  it("S3's worked example: GET Object with a range (docs: sig-v4-header-based-auth)", () => {
    const headers = signRequest(
      {
        method: 'GET',
        url: new URL('https://examplebucket.s3.amazonaws.com/test.txt'),
        headers: { range: 'bytes=0-9', 'x-amz-content-sha256': EMPTY_SHA256 },
        payloadHash: EMPTY_SHA256,
        region: 'us-east-1',
        service: 's3',
        now: new Date(Date.UTC(2013, 4, 24)),
      },
      { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    );
    assert.equal(
      headers.authorization,
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    );
  });

  it('carries a session token, signed, for temporary credentials', () => {
    const headers = signRequest(
      { method: 'GET', url: new URL('https://example.amazonaws.com/'), headers: {}, payloadHash: EMPTY_SHA256, region: 'us-east-1', service: 'service', now: new Date(0) },
      { ...credentials, sessionToken: 'token-1' },
    );
    assert.equal(headers['x-amz-security-token'], 'token-1');
    assert.match(headers.authorization!, /SignedHeaders=host;x-amz-date;x-amz-security-token,/);
  });
});

describe('the local model store', () => {
  let root: string;
  let store: LocalModelStore;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sluice-model-store-'));
    store = new LocalModelStore(root);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates a version whole, lists and reads it, and never overwrites it', async () => {
    assert.deepEqual(await store.versions('signup-risk'), []);
    assert.equal(await store.defaultVersion('signup-risk'), null);
    await store.create('signup-risk', 'v1', new Map([['card.json', Buffer.from('{"a":1}')], ['model.onnx', Buffer.from([1, 2, 3])]]));
    assert.deepEqual(await store.versions('signup-risk'), ['v1']);
    assert.deepEqual(await store.read('signup-risk', 'v1', 'model.onnx'), Buffer.from([1, 2, 3]));
    assert.equal(await store.read('signup-risk', 'v1', 'missing.bin'), null);
    assert.equal(await store.read('signup-risk', 'v2', 'card.json'), null);
    await assert.rejects(store.create('signup-risk', 'v1', new Map([['card.json', Buffer.from('{"b":2}')]])), (e: unknown) => isSluiceError(e, 'MODEL_VERSION_EXISTS'));
    assert.deepEqual(await store.read('signup-risk', 'v1', 'card.json'), Buffer.from('{"a":1}'), 'the first version is untouched');
    assert.deepEqual(await readdir(join(root, 'signup-risk')), ['v1'], 'no staging directory is left behind');
    await writeFile(join(root, 'signup-risk', 'ACTIVE'), 'v1\n');
    assert.equal(await store.defaultVersion('signup-risk'), 'v1');
  });

  it('refuses names that are paths', async () => {
    await assert.rejects(store.read('signup-risk', '../signup-risk', 'card.json'), (e: unknown) => isSluiceError(e, 'MODEL_INVALID'));
    await assert.rejects(store.create('signup-risk', 'v9', new Map([['../escape', Buffer.alloc(1)]])), (e: unknown) => isSluiceError(e, 'MODEL_INVALID'));
  });
});

describe('the model store configuration', () => {
  it('is the repository models/ directory by default, another directory with SLUICE_MODELS_DIR', () => {
    assert.match(modelStoreFromEnv({}).location, /models\/?$/);
    assert.equal(modelStoreFromEnv({ SLUICE_MODELS_DIR: '/srv/models' }).location, '/srv/models');
  });

  it('is S3 with SLUICE_MODEL_STORE=s3, listing every missing variable at once', () => {
    assert.throws(
      () => modelStoreFromEnv({ SLUICE_MODEL_STORE: 's3' }),
      (e: unknown) =>
        isSluiceError(e, 'CONFIG_INVALID') && ['SLUICE_MODEL_S3_ENDPOINT', 'SLUICE_MODEL_S3_BUCKET', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'].every((name) => e.message.includes(name)),
    );
    const store = modelStoreFromEnv({
      SLUICE_MODEL_STORE: 's3',
      SLUICE_MODEL_S3_ENDPOINT: 'http://127.0.0.1:9000',
      SLUICE_MODEL_S3_BUCKET: 'models-bucket',
      AWS_ACCESS_KEY_ID: 'id',
      AWS_SECRET_ACCESS_KEY: 'secret',
    });
    assert.ok(store instanceof S3ModelStore);
    assert.equal(store.location, 's3://models-bucket/models/');
  });
});
