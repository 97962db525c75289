/**
 * The ingest API's S3 document store against a real S3-compatible server: an
 * upload's original lands at `<prefix>sha256/<aa>/<sha256>` byte for byte. The
 * local stack runs no object storage: this test needs one named by
 * SLUICE_TEST_S3_ENDPOINT and SLUICE_TEST_S3_BUCKET (with AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY), as test/integration/model-store-s3.test.ts does
 * (docs/models.md shows how to run s3rver or MinIO); without them it reports
 * itself skipped and says why.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EMPTY_SHA256, signRequest, uriEncode } from '../../connectors/models/sigv4.ts';
import { s3DocumentStore, sha256Hex } from '../../ingest/documents.ts';
import { buildPdf } from '../fixtures/ingest/pdf.ts';
import { uniqueName } from '../helpers.ts';

const endpoint = process.env.SLUICE_TEST_S3_ENDPOINT;
const bucket = process.env.SLUICE_TEST_S3_BUCKET;
const credentials = { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '' };
const skip = endpoint && bucket && credentials.accessKeyId ? false : 'no S3-compatible server: set SLUICE_TEST_S3_ENDPOINT, SLUICE_TEST_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY';

describe('the S3 document store', { skip }, () => {
  it('stores an upload by its SHA-256, byte for byte, and storing it again is harmless', async () => {
    const prefix = `${uniqueName('ingest')}/`;
    const store = s3DocumentStore({ endpoint: endpoint!, bucket: bucket!, prefix, region: 'us-east-1', credentials });
    const bytes = buildPdf({ pages: [[`stored ${prefix}`]] });
    const sha = sha256Hex(bytes);
    const location = await store.put(sha, bytes);
    assert.equal(location, `s3://${bucket}/${prefix}sha256/${sha.slice(0, 2)}/${sha}`);
    assert.equal(await store.put(sha, bytes), location);

    const url = new URL(`${endpoint!.replace(/\/+$/, '')}/${uriEncode(bucket!)}/${`${prefix}sha256/${sha.slice(0, 2)}/${sha}`.split('/').map(uriEncode).join('/')}`);
    const headers = signRequest({ method: 'GET', url, headers: { 'x-amz-content-sha256': EMPTY_SHA256 }, payloadHash: EMPTY_SHA256, region: 'us-east-1', service: 's3', now: new Date() }, credentials);
    const response = await fetch(url, { headers });
    assert.equal(response.status, 200);
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), bytes);
  });
});
