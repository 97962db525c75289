import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../lib/errors.ts';
import type { PolicyInput } from '../../lib/pipeline.ts';
import { parseEnv } from '../../lib/settings.ts';
import {
  CVE_IDENTIFIER,
  DEFAULT_ROUTE_THRESHOLD,
  evaluatePolicy,
  loadTriagePolicy,
  parseSecurityIndicators,
  phraseMatcher,
  policyVersion,
  REASONS,
  SECURITY_INDICATORS_FILE,
  ticketTriagePolicy,
  triageConfigSchema,
} from '../../pipelines/ticket-triage/policy.ts';
import { CATEGORIES, type JiraTicket, type TicketTriagePayload } from '../../pipelines/ticket-triage/types.ts';

const shippedPhrases = parseSecurityIndicators(readFileSync(SECURITY_INDICATORS_FILE, 'utf8'));
const settings = (over: { killSwitchOn?: boolean; routeThreshold?: number } = {}) => ({
  killSwitchOn: false,
  routeThreshold: DEFAULT_ROUTE_THRESHOLD,
  securityPhrases: phraseMatcher(shippedPhrases),
  ...over,
});

const ticket = (over: Partial<JiraTicket> = {}): TicketTriagePayload => ({
  ticket: {
    ticket_key: 'SUP-1',
    project: 'SUP',
    summary: 'Invoice shows the wrong amount',
    description: 'We were billed twice this month.',
    reporter_email: null,
    labels: [],
    priority_hint: null,
    ...over,
  },
  document: null,
});

const documentPayload = (text: string, truncated = false): TicketTriagePayload => ({
  ticket: null,
  document: {
    document_id: 'doc_1',
    filename: 'report.pdf',
    content_type: 'application/pdf',
    sha256: 'a'.repeat(64),
    pages: 1,
    text,
    text_truncated: truncated,
  },
});

/** A model output whose top class is `label` at `score`, the rest shared out evenly. */
function scored(payload: TicketTriagePayload, label: string | null, score: number | null, runnerUp?: number): PolicyInput<TicketTriagePayload> {
  const classScores: Record<string, number> = {};
  if (label !== null && score !== null) {
    const others = CATEGORIES.filter((c) => c !== label);
    const rest = runnerUp === undefined ? (1 - score) / others.length : runnerUp;
    for (const name of others) classScores[name] = name === others[0] ? rest : (1 - score - rest) / (others.length - 1);
    classScores[label] = score;
  }
  return { eventType: payload.ticket ? 'jira_ticket_created' : 'document_uploaded', payload, score, label, classScores };
}

describe('ticket-triage policy: the security rule', () => {
  it('routes a security phrase to security at P1 by rule, whatever the model says', () => {
    for (const summary of ['Possible phishing email', 'We suffered a DATA BREACH', 'Leaked password for the bot', 'XSS vulnerability in comments']) {
      const verdict = evaluatePolicy(scored(ticket({ summary, priority_hint: 'P4' }), 'billing', 0.99), settings());
      assert.deepEqual(verdict, { decision: 'route', decidedBy: 'rule', reasons: [REASONS.securityPhrase], fields: { queue: 'security', priority: 'P1' } }, summary);
    }
  });

  it('wins over the kill switch and a missing score: it needs no model', () => {
    const payload = ticket({ description: 'Our scanner flagged CVE-2024-3094 in xz.' });
    for (const input of [scored(payload, null, null), scored(payload, 'bug', 0.95)]) {
      const verdict = evaluatePolicy(input, settings({ killSwitchOn: true }));
      assert.equal(verdict.decision, 'route');
      assert.equal(verdict.decidedBy, 'rule');
      assert.deepEqual(verdict.reasons, [REASONS.cveIdentifier]);
      assert.deepEqual(verdict.fields, { queue: 'security', priority: 'P1' });
    }
  });

  it('reads the summary, the description and a document\'s text, and names every indicator found', () => {
    assert.equal(evaluatePolicy(scored(ticket({ summary: 'Hello', description: 'a phishing mail' }), 'bug', 0.9), settings()).fields.queue, 'security');
    assert.equal(evaluatePolicy(scored(documentPayload('Page 1\n\nremote code execution in the upload'), 'bug', 0.9), settings()).fields.queue, 'security');
    const both = evaluatePolicy(scored(ticket({ summary: 'cve-2021-44228 vulnerability' }), 'bug', 0.9), settings());
    assert.deepEqual(both.reasons, [REASONS.cveIdentifier, REASONS.securityPhrase]);
    // Labels and file names are not read: they are the producer's tags, not the reporter's words.
    assert.equal(evaluatePolicy(scored(ticket({ labels: ['phishing'] }), 'billing', 0.9), settings()).decidedBy, 'model');
  });

  it('matches CVE identifiers case-insensitively, with a 4-digit year and 4 or more digits', () => {
    for (const text of ['CVE-2024-3094', 'cve-1999-0001', 'see Cve-2023-123456.', '(CVE-2021-44228)']) assert.ok(CVE_IDENTIFIER.test(text), text);
    for (const text of ['CVE-24-3094', 'CVE-2024-123', 'CVE 2024 3094', 'XCVE-2024-3094', 'CVE-2024-3094X', 'CVE-20245-1234']) assert.ok(!CVE_IDENTIFIER.test(text), text);
  });

  it('matches phrases as whole words, in any case and across line breaks', () => {
    const matcher = phraseMatcher(shippedPhrases);
    for (const text of ['Phishing!', 'data\nbreach', 'DATA   BREACH', 'a vulnerability.', 'sql-injection', 'cross site scripting', 'Cross-Site\nScripting']) assert.ok(matcher.test(text), text);
    for (const text of ['antiphishing filter', 'databreach', 'vulnerable', 'data', 'injection']) assert.ok(!matcher.test(text), text);
  });
});

describe('ticket-triage policy: the model', () => {
  it('routes at or above the threshold to the top class by model, with the priority hint or P3', () => {
    const at = evaluatePolicy(scored(ticket({ priority_hint: 'P2' }), 'billing', 0.7), settings());
    assert.deepEqual(at, { decision: 'route', decidedBy: 'model', reasons: [REASONS.scoreAboveRouteThreshold], fields: { queue: 'billing', priority: 'P2' } });
    const noHint = evaluatePolicy(scored(ticket(), 'account', 0.93), settings());
    assert.deepEqual(noHint.fields, { queue: 'account', priority: 'P3' });
    const document = evaluatePolicy(scored(documentPayload('An invoice.'), 'billing', 0.8), settings());
    assert.deepEqual(document.fields, { queue: 'billing', priority: 'P3' });
  });

  it('sends anything just below the threshold to review, the best guess as the queue', () => {
    const below = evaluatePolicy(scored(ticket({ priority_hint: 'P1' }), 'feature_request', 0.6999, 0.2), settings());
    assert.deepEqual(below, {
      decision: 'review',
      decidedBy: 'model',
      reasons: [REASONS.scoreBelowRouteThreshold],
      fields: { queue: 'feature_request', priority: 'P1' },
    });
  });

  it('gives every reason for a review: close runner-up, truncated document text', () => {
    const close = evaluatePolicy(scored(ticket(), 'bug', 0.45, 0.4), settings());
    assert.deepEqual(close.reasons, [REASONS.scoreBelowRouteThreshold, REASONS.closeRunnerUp]);
    const truncated = evaluatePolicy(scored(documentPayload('long text', true), 'bug', 0.5, 0.1), settings());
    assert.deepEqual(truncated.reasons, [REASONS.scoreBelowRouteThreshold, REASONS.documentTextTruncated]);
    const routedTruncated = evaluatePolicy(scored(documentPayload('long text', true), 'bug', 0.9), settings());
    assert.deepEqual(routedTruncated.reasons, [REASONS.scoreAboveRouteThreshold]);
  });

  it('honours another threshold, 0 and 1 included', () => {
    assert.equal(evaluatePolicy(scored(ticket(), 'bug', 0.85), settings({ routeThreshold: 0.9 })).decision, 'review');
    assert.equal(evaluatePolicy(scored(ticket(), 'bug', 0.9), settings({ routeThreshold: 0.9 })).decision, 'route');
    assert.equal(evaluatePolicy(scored(ticket(), 'bug', 0.2), settings({ routeThreshold: 0 })).decision, 'route');
    assert.equal(evaluatePolicy(scored(ticket(), 'bug', 0.999), settings({ routeThreshold: 1 })).decision, 'review');
  });

  it('falls back to review in the bug queue when the kill switch is on, even with a confident score', () => {
    const verdict = evaluatePolicy(scored(ticket({ priority_hint: 'P2' }), 'billing', 0.99), settings({ killSwitchOn: true }));
    assert.deepEqual(verdict, { decision: 'review', decidedBy: 'fallback', reasons: [REASONS.modelSwitchedOff], fields: { queue: 'bug', priority: 'P2' } });
  });

  it('falls back when there is no score, or the model output is not a probability of a known class', () => {
    assert.deepEqual(evaluatePolicy(scored(ticket(), null, null), settings()).reasons, [REASONS.noModelScore]);
    for (const [label, score] of [['billing', Number.NaN], ['billing', 1.2], ['billing', -0.1], ['spam', 0.9], [null, 0.9]] as const) {
      const verdict = evaluatePolicy({ ...scored(ticket(), 'billing', 0.9), label, score }, settings());
      assert.equal(verdict.decidedBy, 'fallback', `${label} ${score}`);
      assert.deepEqual(verdict.reasons, [REASONS.invalidModelOutput]);
      assert.equal(verdict.fields.queue, 'bug');
    }
  });

  it('always names one of the five queues and a priority', () => {
    for (const label of CATEGORIES) {
      for (const score of [0.1, 0.5, 0.7, 0.99]) {
        for (const killSwitchOn of [false, true]) {
          const verdict = evaluatePolicy(scored(ticket(), label, score), settings({ killSwitchOn }));
          assert.ok((CATEGORIES as readonly string[]).includes(verdict.fields.queue));
          assert.match(verdict.fields.priority, /^P[1-4]$/);
          assert.ok(['route', 'review'].includes(verdict.decision));
        }
      }
    }
  });
});

describe('ticket-triage policy: configuration and version', () => {
  it('parses SLUICE_ROUTE_THRESHOLD as a decimal in [0, 1], defaulting to 0.7; empty is an error, not 0', () => {
    assert.equal(parseEnv(triageConfigSchema, {}).routeThreshold, 0.7);
    assert.equal(parseEnv(triageConfigSchema, { SLUICE_ROUTE_THRESHOLD: '0.85' }).routeThreshold, 0.85);
    assert.equal(parseEnv(triageConfigSchema, { SLUICE_ROUTE_THRESHOLD: ' 1 ' }).routeThreshold, 1);
    for (const bad of ['', '  ', '1.5', '-0.1', 'seventy', '70%', '0,7']) {
      assert.throws(() => parseEnv(triageConfigSchema, { SLUICE_ROUTE_THRESHOLD: bad }), (error: unknown) => isSluiceError(error, 'CONFIG_INVALID') && /SLUICE_ROUTE_THRESHOLD/.test(error.message), bad);
    }
  });

  it('loads the shipped list through the PolicyModule and decides with it', () => {
    const policy = ticketTriagePolicy.load(parseEnv(ticketTriagePolicy.configSchema, {}));
    assert.match(policy.version, /^policy-[0-9a-f]{12}$/);
    assert.equal(policy.version, policyVersion(0.7, shippedPhrases));
    const verdict = policy.decide(scored(ticket({ summary: 'Ransomware on a laptop' }), 'bug', 0.99), { killSwitchOn: false });
    assert.equal(verdict.decidedBy, 'rule');
    assert.deepEqual(verdict.fields, { queue: 'security', priority: 'P1' });
  });

  it('changes the policy version with the threshold, the phrases and nothing else', () => {
    const base = policyVersion(0.7, ['phishing', 'data breach']);
    assert.equal(policyVersion(0.7, ['data breach', 'phishing', 'phishing']), base);
    assert.notEqual(policyVersion(0.75, ['phishing', 'data breach']), base);
    assert.notEqual(policyVersion(0.7, ['phishing', 'data breach', 'malware']), base);
    const read = (text: string) => loadTriagePolicy({ routeThreshold: 0.7, securityIndicatorsFile: 'list.txt' }, () => text);
    assert.equal(read('# a comment\nphishing\n\nData Breach  # inline\n').version, base);
    assert.notEqual(read('phishing\n').version, base);
  });

  it('refuses a bad or empty phrase list, listing every bad line, and an unreadable file', () => {
    assert.throws(
      () => parseSecurityIndicators('phishing\nrm -rf /\nok phrase\n(regex)+\n'),
      (error: unknown) => isSluiceError(error, 'CONFIG_INVALID') && /line 2/.test(error.message) && /line 4/.test(error.message) && !/line 3/.test(error.message),
    );
    assert.throws(() => parseSecurityIndicators('# only comments\n\n'), (error: unknown) => isSluiceError(error, 'CONFIG_INVALID'));
    assert.throws(
      () => loadTriagePolicy({ routeThreshold: 0.7, securityIndicatorsFile: '/nonexistent/indicators.txt' }),
      (error: unknown) => isSluiceError(error, 'CONFIG_INVALID') && /SLUICE_SECURITY_INDICATORS_FILE/.test(error.message),
    );
  });

  it('ships a list with the phrases the contract names', () => {
    for (const phrase of ['data breach', 'leaked password', 'vulnerability', 'phishing']) assert.ok(shippedPhrases.includes(phrase), phrase);
  });
});
