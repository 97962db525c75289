/**
 * Documents: text extraction (PDF through pdf.js, Mozilla's maintained
 * pure-JavaScript PDF library; text/plain and text/markdown as UTF-8 or their
 * declared charset) and the content-addressed store of the originals. OCR is
 * out of scope: a PDF without a text layer (a scan) is refused as NO_TEXT.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3StoreOptions } from '../connectors/models/s3.ts';
import { signRequest, uriEncode } from '../connectors/models/sigv4.ts';
import { IngestError } from './errors.ts';

export const DOCUMENT_TYPES = ['application/pdf', 'text/plain', 'text/markdown'] as const;
export type DocumentType = (typeof DOCUMENT_TYPES)[number];

export interface Extracted {
  text: string;
  /** Pages of a PDF; null for text files. */
  pages: number | null;
  textTruncated: boolean;
}

/** C0 controls but tab and LF, DEL and C1 controls: what the pipelines' text normalization removes too. */
const CONTROL_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** CRLF and lone CR → LF, control characters removed, trimmed; then cut to `maxBytes` of UTF-8 on a character boundary. */
export function normalizeAndTruncate(raw: string, maxBytes: number): { text: string; truncated: boolean } {
  const text = raw.toWellFormed().replace(/\r\n?/g, '\n').replace(CONTROL_CHARS, '').trim();
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return { text, truncated: false };
  const bytes = Buffer.from(text, 'utf8');
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // never cut inside a UTF-8 sequence
  return { text: bytes.subarray(0, end).toString('utf8').trim(), truncated: true };
}

/**
 * The media type of an upload: the part's declared type when it is one we
 * read, else (for application/octet-stream or none) the PDF signature or the
 * file name's extension. Undefined: unsupported.
 */
export function documentTypeOf(declared: string | undefined, filename: string, bytes: Buffer): { type: DocumentType; charset?: string } | undefined {
  const [bare = '', ...params] = (declared ?? '').split(';').map((part) => part.trim());
  const type = bare.toLowerCase();
  const charset = params.map((p) => /^charset=("?)([^"]+)\1$/i.exec(p)?.[2]).find((c) => c !== undefined);
  if ((DOCUMENT_TYPES as readonly string[]).includes(type)) return { type: type as DocumentType, ...(charset && { charset }) };
  if (type === 'text/x-markdown') return { type: 'text/markdown', ...(charset && { charset }) };
  if (type !== '' && type !== 'application/octet-stream') return undefined;
  if (bytes.subarray(0, 5).toString('latin1') === '%PDF-') return { type: 'application/pdf' };
  const extension = /\.([A-Za-z0-9]+)$/.exec(filename)?.[1]?.toLowerCase();
  if (extension === 'txt' || extension === 'text') return { type: 'text/plain' };
  if (extension === 'md' || extension === 'markdown') return { type: 'text/markdown' };
  return undefined;
}

export async function extractText(bytes: Buffer, kind: { type: DocumentType; charset?: string }, maxTextBytes: number): Promise<Extracted> {
  if (kind.type === 'application/pdf') return extractPdf(bytes, maxTextBytes);
  let decoded: string;
  try {
    decoded = new TextDecoder(kind.charset ?? 'utf-8', { fatal: true }).decode(bytes);
  } catch (error) {
    if (error instanceof RangeError) {
      throw new IngestError('UNSUPPORTED_DOCUMENT_TYPE', `charset ${JSON.stringify(kind.charset)} is not one this gateway decodes; send UTF-8.`);
    }
    throw new IngestError('CORRUPT_DOCUMENT', `The file is not valid ${kind.charset ?? 'UTF-8'} text; send it as UTF-8 or declare its charset (text/plain; charset=…).`);
  }
  const { text, truncated } = normalizeAndTruncate(decoded, maxTextBytes);
  if (text === '') throw new IngestError('NO_TEXT', 'The file holds no text (it is empty or only whitespace and control characters).');
  return { text, pages: null, textTruncated: truncated };
}

/** pdf.js is loaded on the first PDF: it weighs tens of MB of heap that a gateway taking only events never needs. */
let pdfjs: Promise<typeof import('pdfjs-dist/legacy/build/pdf.mjs')> | undefined;

async function extractPdf(bytes: Buffer, maxTextBytes: number): Promise<Extracted> {
  pdfjs ??= import('pdfjs-dist/legacy/build/pdf.mjs');
  const { getDocument } = await pdfjs;
  const task = getDocument({
    data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice(),
    useSystemFonts: false,
    disableFontFace: true,
    verbosity: 0,
    stopAtErrors: true,
  });
  try {
    let document: Awaited<typeof task.promise>;
    try {
      document = await task.promise;
    } catch (error) {
      const name = (error as { name?: string } | null)?.name;
      if (name === 'PasswordException') {
        throw new IngestError('ENCRYPTED_DOCUMENT', 'The PDF is password-protected; remove the password (or upload an unprotected export) and try again.');
      }
      throw new IngestError('CORRUPT_DOCUMENT', `The file is not a readable PDF (${(error as Error)?.message ?? String(error)}); check that the upload is complete and not damaged.`);
    }
    const parts: string[] = [];
    let bytesSoFar = 0;
    try {
      for (let page = 1; page <= document.numPages; page++) {
        const content = await (await document.getPage(page)).getTextContent();
        const lines: string[] = [];
        for (const item of content.items) {
          if ('str' in item) lines.push(item.hasEOL ? `${item.str}\n` : item.str);
        }
        const pageText = lines.join('');
        parts.push(pageText);
        bytesSoFar += Buffer.byteLength(pageText, 'utf8');
        // Enough text to fill the limit: the rest of the pages are counted, not read.
        if (bytesSoFar > maxTextBytes * 2) break;
      }
    } catch (error) {
      throw new IngestError('CORRUPT_DOCUMENT', `The PDF is damaged: a page could not be read (${(error as Error)?.message ?? String(error)}).`);
    }
    const { text, truncated } = normalizeAndTruncate(parts.join('\n'), maxTextBytes);
    if (text === '') {
      throw new IngestError('NO_TEXT', 'The PDF has no extractable text (a scan or images only?); OCR is not supported: upload a PDF with a text layer, or the text itself.');
    }
    return { text, pages: document.numPages, textTruncated: truncated };
  } finally {
    await task.destroy().catch(() => {});
  }
}

export const sha256Hex = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Where originals are kept, by content: the same bytes are stored once. */
export interface DocumentStore {
  /** Stores the bytes under their SHA-256 (idempotent); returns where. */
  put(sha256: string, bytes: Buffer): Promise<string>;
}

/** A local directory: `<root>/sha256/<first two hex digits>/<sha256>`, written to a temporary name and renamed, so a reader never sees half a file. */
export function localDocumentStore(root: string): DocumentStore {
  return {
    async put(sha256, bytes) {
      const dir = join(root, 'sha256', sha256.slice(0, 2));
      const path = join(dir, sha256);
      const existing = await stat(path).catch(() => undefined);
      if (existing?.size === bytes.length) return path;
      await mkdir(dir, { recursive: true });
      const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
      await writeFile(temporary, bytes);
      await rename(temporary, path);
      return path;
    },
  };
}

/** As the model store's S3 backend takes them: endpoint (path-style URLs), bucket, key prefix (`documents/`, say), region, credentials. */
export type S3DocumentStoreOptions = Omit<S3StoreOptions, 'now'>;

/**
 * S3-compatible object storage (AWS S3, MinIO, Ceph, R2): `<prefix>sha256/<aa>/<sha256>`,
 * requests signed with SigV4 (the model store's signer). A PUT of the same
 * content is idempotent, so a duplicate upload racing another costs nothing.
 */
export function s3DocumentStore(options: S3DocumentStoreOptions): DocumentStore {
  const base = options.endpoint.replace(/\/+$/, '');
  return {
    async put(sha256, bytes) {
      const key = `${options.prefix}sha256/${sha256.slice(0, 2)}/${sha256}`;
      const url = new URL(`${base}/${uriEncode(options.bucket)}/${key.split('/').map(uriEncode).join('/')}`);
      const headers = signRequest(
        { method: 'PUT', url, headers: { 'x-amz-content-sha256': sha256, 'content-type': 'application/octet-stream' }, payloadHash: sha256, region: options.region, service: 's3', now: new Date() },
        options.credentials,
      );
      let response: Response;
      try {
        response = await fetch(url, { method: 'PUT', headers, body: bytes, signal: AbortSignal.timeout(options.timeoutMs ?? 30_000) });
      } catch (error) {
        throw new IngestError('OVERLOADED', `The document store (${url.origin}) did not answer: ${(error as Error).message}; retry shortly.`, { retryAfterSeconds: 5, cause: error });
      }
      if (!response.ok) {
        const body = (await response.text().catch(() => '')).slice(0, 300);
        throw new IngestError('INTERNAL', `The document store refused the document: HTTP ${response.status} ${/<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? response.statusText}; check SLUICE_INGEST_S3_* and the credentials.`);
      }
      return `s3://${options.bucket}/${key}`;
    },
  };
}
