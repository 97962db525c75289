import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CHAR_WEIGHT,
  clipText,
  FEATURE_DIMS,
  FEATURE_NAMES,
  featuresOf,
  featureText,
  fnv1a32,
  hashText,
  MAX_FEATURE_CHARS,
  MONITORED_NAMES,
  monitoredOf,
  ticketTriageModel,
  tokenize,
} from '../../pipelines/ticket-triage/features.ts';
import { generateTicketEvents } from '../../pipelines/ticket-triage/generator.ts';
import type { TicketTriagePayload } from '../../pipelines/ticket-triage/types.ts';

/** FNV-1a 32-bit the textbook way: over the bytes Node's own UTF-8 encoder gives. */
function referenceFnv(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h;
}

/**
 * The feature recipe written out plainly (module comment of features.ts), to
 * hold the optimized implementation to it: namespaced strings hashed whole.
 */
function referenceVector(text: string, dims = FEATURE_DIMS): Float64Array {
  const tokens = text.slice(0, MAX_FEATURE_CHARS).toLowerCase().replace(/\p{Nd}+/gu, '0').match(/[\p{L}\p{M}\p{N}]+/gu) ?? [];
  const counts = new Map<string, number>();
  const bump = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  tokens.forEach((token, i) => {
    bump(`w:${token}`);
    if (i > 0) bump(`b:${tokens[i - 1]} ${token}`);
    const padded = ` ${token} `;
    for (let j = 0; j + 3 <= padded.length; j++) bump(`c:${padded.slice(j, j + 3)}`);
  });
  const out = new Float64Array(dims);
  for (const [key, n] of counts) {
    const h = referenceFnv(key);
    const weight = key.startsWith('c:') ? CHAR_WEIGHT : 1;
    out[h % dims]! += (h >= 2 ** 31 ? -1 : 1) * weight * Math.log1p(n);
  }
  const norm = Math.hypot(...out);
  return norm === 0 ? out : out.map((v) => v / norm);
}

const norm = (v: ArrayLike<number>) => Math.hypot(...Array.from(v));
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot / (norm(a) * norm(b));
};

const ticket = (summary: string, description: string | null = null, labels: string[] = []): TicketTriagePayload => ({
  ticket: { ticket_key: 'SUP-1', project: 'SUP', summary, description, reporter_email: null, labels, priority_hint: null },
  document: null,
});

describe('fnv1a32', () => {
  it('gives the published FNV-1a test vectors', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
    assert.equal(fnv1a32('foobar'), 0xbf9cf968);
  });

  it('hashes the UTF-8 bytes of any string, as Node encodes them', () => {
    for (const text of ['héllo', 'Straße', '€ and ¥', '日本語のテキスト', 'emoji 😀 🚀', 'lone \ud800 high', 'lone \udc00 low', 'end \ud83d', '\u0000\u007f\u0080\u07ff\u0800\uffff']) {
      assert.equal(fnv1a32(text), referenceFnv(text), JSON.stringify(text));
    }
  });
});

describe('tokenize', () => {
  it('lower-cases, maps digit runs to 0 and splits on anything but letters, marks and digits', () => {
    assert.deepEqual(tokenize('Error 500 on INV-2026-00391: café crème, naïve!'), ['error', '0', 'on', 'inv', '0', '0', 'café', 'crème', 'naïve']);
    assert.deepEqual(tokenize('CVE-2024-3094'), ['cve', '0', '0']);
    assert.deepEqual(tokenize('  \n\t '), []);
  });
});

describe('hashText', () => {
  it('follows the documented recipe exactly', () => {
    const texts = [
      'Charged twice for the Pro plan in March',
      'Refund request for order #123456\nPlease issue a refund to the original payment method.',
      'Sync stuck at 45% — Fehler beim Speichern, 日本語 too 😀',
      'the the the the bug bug',
    ];
    for (const text of texts) {
      const { vector } = hashText(text);
      const expected = referenceVector(text);
      for (let i = 0; i < FEATURE_DIMS; i++) assert.ok(Math.abs(vector[i]! - expected[i]!) < 1e-6, `${text}: bucket ${i}: ${vector[i]} vs ${expected[i]}`);
    }
  });

  it('returns a finite, L2-normalized float32 vector of FEATURE_DIMS values, all zero for text without words', () => {
    const { vector, tokens } = hashText('Invoice shows the wrong amount');
    assert.ok(vector instanceof Float32Array);
    assert.equal(vector.length, FEATURE_DIMS);
    assert.equal(tokens, 5);
    assert.ok(Math.abs(norm(vector) - 1) < 1e-5);
    assert.ok(vector.every(Number.isFinite));
    const empty = hashText(' -- !! ');
    assert.equal(empty.tokens, 0);
    assert.ok(empty.vector.every((v) => v === 0));
  });

  it('is deterministic and depends on word counts only through log(1 + count)', () => {
    assert.deepEqual(hashText('refund my invoice please'), hashText('refund my invoice please'));
    assert.notDeepEqual(hashText('refund refund').vector, hashText('refund').vector);
  });

  it('keeps a misspelled word close to the right one, through character 3-grams', () => {
    const right = hashText('please refund the payment').vector;
    const typo = hashText('please refnud the paymnet').vector;
    const other = hashText('please export the report').vector;
    assert.ok(cosine(right, typo) > cosine(right, other), `${cosine(right, typo)} vs ${cosine(right, other)}`);
  });

  it('reads at most MAX_FEATURE_CHARS code units and never splits a surrogate pair', () => {
    const head = `${'word '.repeat(MAX_FEATURE_CHARS).slice(0, MAX_FEATURE_CHARS - 1)} `;
    assert.deepEqual(hashText(`${head}phishing refund invoice`).vector, hashText(head).vector);
    const pairAtEdge = `${'a'.repeat(MAX_FEATURE_CHARS - 1)}😀`;
    assert.equal(clipText(pairAtEdge, MAX_FEATURE_CHARS), 'a'.repeat(MAX_FEATURE_CHARS - 1));
    assert.ok(clipText(pairAtEdge, MAX_FEATURE_CHARS).isWellFormed());
  });
});

describe('the ticket-triage model adapter', () => {
  it('names FEATURE_DIMS hashed columns h0000…', () => {
    assert.equal(FEATURE_NAMES.length, FEATURE_DIMS);
    assert.equal(FEATURE_NAMES[0], 'h0000');
    assert.equal(FEATURE_NAMES[FEATURE_DIMS - 1], `h${FEATURE_DIMS - 1}`);
    assert.equal(new Set(FEATURE_NAMES).size, FEATURE_DIMS);
    assert.deepEqual(ticketTriageModel.featureNames, FEATURE_NAMES);
    assert.deepEqual(ticketTriageModel.output, { kind: 'multiclass', classes: ['billing', 'bug', 'security', 'account', 'feature_request'] });
  });

  it('reads a ticket\'s summary, labels and description, and a document\'s file name and text', () => {
    const payload = ticket('Charged twice', 'Card ending 4242', ['Billing']);
    assert.equal(featureText(payload), 'Charged twice\nBilling\nCard ending 4242');
    assert.deepEqual(ticketTriageModel.features('jira_ticket_created', payload), hashText('charged twice billing card ending 0').vector);
    const document: TicketTriagePayload = {
      ticket: null,
      document: { document_id: 'd', filename: 'invoice-7.pdf', content_type: 'application/pdf', sha256: 'a'.repeat(64), pages: 1, text: 'Total due', text_truncated: false },
    };
    assert.deepEqual(ticketTriageModel.features('document_uploaded', document), hashText('invoice 0 pdf total due').vector);
  });

  it('gives one row of the right width for every generated event, identical on a second run', () => {
    const events = [...generateTicketEvents({ seed: 4, count: 300, startMs: 0 })];
    for (const event of events) {
      const row = ticketTriageModel.features(event.eventType, event.payload);
      assert.equal(row.length, FEATURE_NAMES.length);
      assert.ok(Array.from(row).every(Number.isFinite));
      assert.deepEqual(row, featuresOf(event.payload));
    }
  });

  it('monitors a few text statistics, the same whether or not features ran first', () => {
    const payload = ticket('Found CVE-2024-3094 and cve-2021-44228', 'details here', ['security', 'urgent']);
    const features = ticketTriageModel.features('jira_ticket_created', payload);
    const values = ticketTriageModel.monitored('jira_ticket_created', payload, features);
    assert.deepEqual(ticketTriageModel.monitoredNames, MONITORED_NAMES);
    const text = featureText(payload);
    assert.deepEqual(values, [0, Math.log1p(text.length), Math.log1p(tokenize(text).length), 2, 1, 2]);
    // A copy of the vector carries no cached token count: the value is recomputed, and equal.
    assert.deepEqual(ticketTriageModel.monitored('jira_ticket_created', payload, Array.from(features)), values);
    const document: TicketTriagePayload = {
      ticket: null,
      document: { document_id: 'd', filename: 'a.txt', content_type: 'text/plain', sha256: 'a'.repeat(64), pages: null, text: 'x y', text_truncated: true },
    };
    assert.deepEqual(monitoredOf(document, 3), [1, Math.log1p('a.txt\nx y'.length), Math.log1p(3), 0, 0, 0]);
  });
});
