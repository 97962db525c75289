/**
 * The model store on S3-compatible object storage: `<prefix><kind>/<version>/<file>`
 * in one bucket, path-style URLs (`<endpoint>/<bucket>/<key>`), which AWS S3,
 * MinIO, Ceph and R2 all accept. Requests are signed with SigV4 (sigv4.ts).
 *
 * A version's card is written last, with `If-None-Match: *`: a version is
 * complete once its card exists, and two racing registrations of one version
 * cannot both succeed.
 */
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import { type AwsCredentials, EMPTY_SHA256, sha256Hex, signRequest, uriEncode } from './sigv4.ts';
import { ACTIVE_FILE, isPlainName, type ModelStore } from './store.ts';

export interface S3StoreOptions {
  /** e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000` */
  endpoint: string;
  bucket: string;
  /** Key prefix of the store, e.g. `models/` (may be empty). */
  prefix: string;
  region: string;
  credentials: AwsCredentials;
  /** Per request; default 30 s. */
  timeoutMs?: number;
  now?(): Date;
}

/** The file a reader takes as proof that a version is complete. */
const CARD_FILE = 'card.json';

function checkNames(...names: string[]): void {
  for (const name of names) {
    if (!isPlainName(name)) throw new SluiceError('MODEL_INVALID', `Invalid name '${name}': use letters, digits, '.', '_' and '-' only.`);
  }
}

const XML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const unescapeXml = (text: string) => text.replace(/&(amp|lt|gt|quot|apos);/g, (_, name: string) => XML_ENTITIES[name]!);

export class S3ModelStore implements ModelStore {
  readonly location: string;
  private readonly base: string;
  private readonly options: S3StoreOptions;

  constructor(options: S3StoreOptions) {
    this.options = options;
    this.base = options.endpoint.replace(/\/+$/, '');
    this.location = `s3://${options.bucket}/${options.prefix}`;
  }

  private key(...parts: string[]): string {
    return `${this.options.prefix}${parts.join('/')}`;
  }

  /** One signed request; the response, whatever its status. Network failures are MODEL_STORE_UNAVAILABLE (retriable). */
  private async request(method: string, key: string | null, init: { query?: Record<string, string>; body?: Buffer; headers?: Record<string, string> } = {}): Promise<Response> {
    const path = key === null ? `/${uriEncode(this.options.bucket)}` : `/${uriEncode(this.options.bucket)}/${key.split('/').map(uriEncode).join('/')}`;
    const url = new URL(`${this.base}${path}`);
    for (const [name, value] of Object.entries(init.query ?? {})) url.searchParams.set(name, value);
    const payloadHash = init.body ? sha256Hex(init.body) : EMPTY_SHA256;
    const headers = signRequest(
      {
        method,
        url,
        headers: { ...init.headers, 'x-amz-content-sha256': payloadHash },
        payloadHash,
        region: this.options.region,
        service: 's3',
        now: this.options.now?.() ?? new Date(),
      },
      this.options.credentials,
    );
    try {
      return await fetch(url, { method, headers, body: init.body, signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000) });
    } catch (error) {
      throw new SluiceError('MODEL_STORE_UNAVAILABLE', `${method} ${url.origin}${url.pathname} failed: ${errorMessage(error)}. Check SLUICE_MODEL_S3_ENDPOINT and that the storage is up.`, { cause: error });
    }
  }

  private async failure(response: Response, what: string): Promise<SluiceError> {
    const body = (await response.text().catch(() => '')).slice(0, 300);
    const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? response.statusText;
    const hint = response.status === 403 ? ' Check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and SLUICE_MODEL_S3_REGION.' : '';
    return new SluiceError('MODEL_STORE_UNAVAILABLE', `${what} in ${this.location}: HTTP ${response.status} ${code}.${hint}`, { retriable: response.status >= 500 || response.status === 429 });
  }

  async versions(kind: string): Promise<string[]> {
    checkNames(kind);
    const prefix = this.key(kind, '');
    const found: string[] = [];
    let token: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix, delimiter: '/' };
      if (token) query['continuation-token'] = token;
      const response = await this.request('GET', null, { query });
      if (!response.ok) throw await this.failure(response, `Listing versions of ${kind}`);
      const xml = await response.text();
      for (const match of xml.matchAll(/<CommonPrefixes>\s*<Prefix>([^<]*)<\/Prefix>/g)) {
        const name = unescapeXml(match[1]!).slice(prefix.length).replace(/\/$/, '');
        if (isPlainName(name)) found.push(name);
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? unescapeXml(/<NextContinuationToken>([^<]*)</.exec(xml)?.[1] ?? '') || undefined : undefined;
    } while (token);
    return found.sort();
  }

  async read(kind: string, version: string, file: string): Promise<Buffer | null> {
    checkNames(kind, version, file);
    const response = await this.request('GET', this.key(kind, version, file));
    if (response.status === 404) return null;
    if (!response.ok) throw await this.failure(response, `Reading ${kind}/${version}/${file}`);
    return Buffer.from(await response.arrayBuffer());
  }

  async create(kind: string, version: string, files: ReadonlyMap<string, Buffer>): Promise<void> {
    checkNames(kind, version, ...files.keys());
    const exists = () => new SluiceError('MODEL_VERSION_EXISTS', `Version ${version} of ${kind} already exists in ${this.location}; versions are immutable: register it under a new version name.`);
    const head = await this.request('HEAD', this.key(kind, version, CARD_FILE));
    if (head.ok) throw exists();
    if (head.status !== 404) throw await this.failure(head, `Checking ${kind}/${version}`);
    const ordered = [...files].sort(([a], [b]) => Number(a === CARD_FILE) - Number(b === CARD_FILE));
    for (const [name, body] of ordered) {
      const headers: Record<string, string> = { 'content-type': name.endsWith('.json') ? 'application/json' : 'application/octet-stream' };
      if (name === CARD_FILE) headers['if-none-match'] = '*';
      const response = await this.request('PUT', this.key(kind, version, name), { body, headers });
      if (response.status === 412) throw exists();
      if (!response.ok) throw await this.failure(response, `Writing ${kind}/${version}/${name}`);
      await response.body?.cancel();
    }
  }

  async defaultVersion(kind: string): Promise<string | null> {
    checkNames(kind);
    const response = await this.request('GET', this.key(kind, ACTIVE_FILE));
    if (response.status === 404) return null;
    if (!response.ok) throw await this.failure(response, `Reading ${kind}/${ACTIVE_FILE}`);
    const name = (await response.text()).trim();
    return name === '' ? null : name;
  }
}
