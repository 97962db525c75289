/**
 * Synthetic ticket-triage traffic: Jira tickets (about 85 %) and uploaded
 * documents (about 15 %, longer text), each with a ground-truth category. The
 * demo, tests, benchmarks and model training draw from here.
 *
 * Every event is a function of (seed, index) alone, through its own PRNG
 * stream (lib/prng.ts), so the first N events of a run are the same
 * whatever the count. The raw envelopes look like what producers send (CRLF
 * line ends, stray control characters, labels in mixed case with duplicates,
 * capitalized emails, content types with parameters, unknown extra fields,
 * epoch-ms or offset timestamps); each event says what validation must make of
 * its payload, independently of payload.ts, so tests can hold one against the other.
 *
 * What makes the task learnable but not trivial, on purpose:
 * - per category, summary and sentence templates with slots, sharing some
 *   vocabulary across categories (SSO is account and feature_request; a
 *   charge can be billing or security);
 * - misspellings (about 3 % of words), generic summaries ("Need help"), tickets
 *   without a description;
 * - mixed tickets: 20 % carry sentences of a second category;
 * - label noise: 5 % of ground-truth labels are another category, as when a
 *   human triager mis-files a ticket.
 */
import { createHash } from 'node:crypto';
import type { DeadLetterReason } from '../../lib/contracts.ts';
import { generateRange, hex, oversizedSample, shuffled, spellTimestamp, withInvalidUtf8 } from '../../lib/generate.ts';
import type { GeneratedEvent, GenerateOptions, MalformedOptions, MalformedSample, TrafficGenerator } from '../../lib/pipeline.ts';
import { createRng, type Rng } from '../../lib/prng.ts';
import {
  CATEGORIES,
  type Category,
  type ContentType,
  DOCUMENT_UPLOADED,
  type EventType,
  type JiraTicket,
  type Priority,
  TICKET_CREATED,
  type TicketTriagePayload,
  type UploadedDocument,
} from './types.ts';

export const DOCUMENT_SHARE = 0.15;
export const MIXED_SHARE = 0.2;
export const LABEL_NOISE = 0.05;
export const TYPO_RATE = 0.03;
/** Category mix of the traffic (weights). */
export const CATEGORY_WEIGHTS: Readonly<Record<Category, number>> = {
  bug: 0.32,
  billing: 0.2,
  account: 0.2,
  feature_request: 0.16,
  security: 0.12,
};

export interface RawEnvelope {
  event_id: string;
  event_type: EventType;
  /** RFC 3339 (UTC or with an offset) or epoch milliseconds. */
  occurred_at: string | number;
  source: string;
  payload: Record<string, unknown>;
}

export interface GeneratedTicketEvent extends GeneratedEvent {
  eventType: EventType;
  envelope: RawEnvelope;
  /** The payload validation must produce from `envelope.payload`. */
  payload: TicketTriagePayload;
  /** Unknown payload fields validation must drop, sorted. */
  droppedFields: string[];
  /** The ground-truth label (label noise included): what training learns and evaluation scores. */
  category: Category;
  /** The category whose templates wrote the text. */
  drawnFrom: Category;
  /** The category of mixed-in sentences, if any. */
  secondary: Category | null;
}

// ---------------------------------------------------------------------------
// Vocabulary. `{slot}` placeholders are filled from SLOTS.

const SLOTS: Record<string, (rng: Rng) => string> = {
  amount: (rng) => `${rng.pick(['$', '€', '£'])}${rng.int(9, 4_999)}.${String(rng.int(0, 99)).padStart(2, '0')}`,
  invoice: (rng) => `INV-${rng.int(2024, 2026)}-${rng.int(1_000, 99_999)}`,
  order: (rng) => `#${rng.int(100_000, 999_999)}`,
  plan: (rng) => rng.pick(['Pro', 'Business', 'Enterprise', 'Team', 'Starter']),
  month: (rng) => rng.pick(['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December']),
  seats: (rng) => String(rng.int(2, 400)),
  last4: (rng) => String(rng.int(1_000, 9_999)),
  vat: (rng) => `${rng.pick(['DE', 'FR', 'NL', 'IE', 'GB'])}${rng.int(100_000_000, 999_999_999)}`,
  feature: (rng) => rng.pick(['dashboard', 'reports', 'calendar', 'inbox', 'kanban board', 'settings', 'analytics', 'timeline', 'file browser', 'checkout', 'search', 'editor']),
  object: (rng) => rng.pick(['project', 'invoice template', 'contact', 'task', 'comment', 'workflow', 'report', 'form', 'document', 'custom field']),
  action: (rng) => rng.pick(['clicking save', 'switching tabs', 'uploading a file', 'filtering by date', 'opening a shared link', 'sorting the table', 'pressing back']),
  browser: (rng) => rng.pick(['Chrome', 'Firefox', 'Safari', 'Edge']),
  os: (rng) => rng.pick(['Windows 11', 'macOS', 'Ubuntu', 'iOS', 'Android']),
  version: (rng) => `${rng.int(3, 9)}.${rng.int(0, 30)}.${rng.int(0, 9)}`,
  percent: (rng) => String(rng.int(5, 95)),
  module: (rng) => rng.pick(['SyncService', 'ExportJob', 'InvoiceRenderer', 'AuthFilter', 'QueueWorker', 'CacheLoader']),
  fn: (rng) => rng.pick(['run', 'apply', 'load', 'flush', 'render', 'handle']),
  line: (rng) => String(rng.int(10, 900)),
  reqid: (rng) => hex(rng, 12),
  country: (rng) => rng.pick(['Russia', 'Brazil', 'Vietnam', 'Nigeria', 'Romania', 'China', 'an unknown country']),
  cve: (rng) => `CVE-${rng.int(2019, 2026)}-${rng.int(1_000, 49_999)}`,
  library: (rng) => rng.pick(['log4j', 'openssl', 'lodash', 'jackson-databind', 'libwebp', 'xz-utils', 'spring-core']),
  domain: (rng) => `${rng.pick(['secure', 'login', 'account', 'verify'])}-${rng.pick(['acme', 'support', 'billing', 'portal'])}.${rng.pick(['com', 'net', 'xyz', 'top'])}`,
  company: (rng) => rng.pick(['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark Industries', 'Wayne Enterprises']),
  time: (rng) => `${String(rng.int(0, 23)).padStart(2, '0')}:${String(rng.int(0, 59)).padStart(2, '0')} UTC`,
  n: (rng) => String(rng.int(2, 60)),
  name: (rng) => `${rng.pick(FIRST_NAMES)} ${rng.pick(LAST_NAMES)}`,
  user: (rng) => `${rng.pick(FIRST_NAMES).toLowerCase()}${rng.int(1, 99)}`,
  idp: (rng) => rng.pick(['Okta', 'Azure AD', 'Google Workspace', 'OneLogin', 'Keycloak']),
  city: (rng) => rng.pick(['Berlin', 'Lisbon', 'Austin', 'Toronto', 'Singapore', 'Nairobi']),
  format: (rng) => rng.pick(['Excel', 'PDF', 'JSON', 'Google Sheets', 'CSV with custom delimiters']),
  tool: (rng) => rng.pick(['Slack', 'Salesforce', 'HubSpot', 'Microsoft Teams', 'Zapier', 'GitHub']),
  event: (rng) => rng.pick(['task created', 'invoice paid', 'user invited', 'comment added']),
  competitor: (rng) => rng.pick(['Asana', 'Trello', 'Monday', 'Notion', 'ClickUp']),
  department: (rng) => rng.pick(['marketing', 'finance', 'operations', 'sales', 'legal', 'engineering']),
  product: (rng) => rng.pick(['the app', 'the web app', 'the mobile app', 'the API', 'our workspace']),
};

interface CategoryText {
  summaries: readonly string[];
  sentences: readonly string[];
  labels: readonly string[];
  filenames: readonly string[];
}

const TEXT: Record<Category, CategoryText> = {
  billing: {
    summaries: [
      'Charged twice for the {plan} plan in {month}',
      'Invoice {invoice} shows the wrong amount',
      'Refund request for order {order}',
      'Credit card declined when renewing our subscription',
      'Need our VAT number on the invoice',
      'Unexpected charge of {amount} on my statement',
      'Cannot update the payment method',
      'Billing address is wrong on the receipt',
      'Downgrade did not reduce the monthly fee',
      'Proration looks wrong after upgrading to {plan}',
      'Payment failed but the money was taken',
      'Question about annual billing discount',
      'Please cancel the subscription and stop charging us',
      'Invoice missing for {month}',
    ],
    sentences: [
      'We were billed {amount} on our card but our contract says {amount}.',
      'The invoice {invoice} lists {seats} seats but we only have {seats} active users.',
      'Please issue a refund to the original payment method.',
      'Our finance team needs a corrected invoice with the VAT ID {vat}.',
      'The card ending in {last4} was charged twice this month.',
      'Can you explain the proration on the last statement?',
      'Our accounts payable department cannot reconcile the charges.',
      'The subscription renewed even though we cancelled it in {month}.',
      'We would like to switch from monthly to annual billing.',
      'The receipt does not show our company name and billing address.',
      'We paid by bank transfer on {month} 3rd, reference {invoice}, but the account still shows the balance as overdue.',
      'The price in the checkout was {amount}, the invoice says {amount}.',
      'Please send the invoices to our accounting mailbox from now on.',
      'Our purchase order number must appear on every invoice.',
      'The payment page keeps saying the card was declined, the bank says no charge was attempted.',
    ],
    labels: ['billing', 'invoice', 'refund', 'payments', 'finance'],
    filenames: ['invoice-{invoice}.pdf', 'receipt-{month}.pdf', 'bank-statement.pdf', 'purchase-order.pdf', 'billing-dispute.txt'],
  },
  bug: {
    summaries: [
      'The {feature} crashes when {action}',
      'Error 500 when saving a {object}',
      '{feature} not loading on {browser}',
      'Export to CSV produces an empty file',
      'App freezes after update to {version}',
      'Notifications are sent twice',
      'Search returns wrong results for {object}',
      'Timezone shown incorrectly in the {feature}',
      'Broken layout on mobile in the {feature}',
      'Sync stuck at {percent}%',
      'Attachments fail to upload',
      'Dashboard widgets show stale data',
      'Blank page after login on {browser}',
      'Regression in {version}: {object} cannot be deleted',
    ],
    sentences: [
      'Steps to reproduce: open the {feature}, start {action}, observe the error.',
      'Expected the {object} to be saved, but got an error message instead.',
      'This started after the release of version {version}.',
      'Stack trace: NullPointerException at {module}.{fn}({module}.java:{line}).',
      'It happens on {browser} and {os}, but not on {browser}.',
      'The console shows TypeError: cannot read properties of undefined.',
      'It works after a page reload but fails again after a few minutes.',
      'It affects about {percent}% of our users since yesterday.',
      'Logs are attached; the request id is {reqid}.',
      'This is a regression: it worked in version {version}.',
      'The spinner keeps turning and nothing happens.',
      'When I click the button twice the {object} is duplicated.',
      'The API returns HTTP 502 for about one request in ten.',
      'Screenshots of the broken {feature} are attached.',
      'Clearing the cache did not help.',
    ],
    labels: ['bug', 'regression', 'crash', 'mobile', 'web', 'frontend', 'backend'],
    filenames: ['crash-log.txt', 'error-report.md', 'repro-steps.txt', 'console-output.txt', 'stacktrace.txt', 'har-export.txt'],
  },
  security: {
    summaries: [
      'Possible phishing email pretending to be from {company}',
      'Suspicious login from {country} on an admin account',
      'Found {cve} in the bundled {library}',
      'API key exposed in a public repository',
      'Leaked password for a service account',
      'XSS in the {feature} comments',
      'Unauthorized access to {object} records',
      'Report: SQL injection in the search endpoint',
      'Data breach notification request',
      'Session token not invalidated after logout',
      'Unknown device added to MFA on my account',
      'Brute force attempts against the login page',
      'Responsible disclosure: vulnerability in file upload',
      'Someone accessed our workspace without permission',
    ],
    sentences: [
      'We received an email asking users to reset their password through a link to {domain}.',
      'Our scanner flagged {cve} in {library} version {version}.',
      'Someone logged in from an IP address in {country} at {time} that none of us recognise.',
      'An access token was committed to a public GitHub repository by mistake.',
      'The {feature} field renders HTML without escaping, so an injected script tag executes.',
      'Please rotate the credentials and check the audit logs for the last {n} days.',
      'We need to know whether any customer data was exposed.',
      'The session cookie is still valid after logging out.',
      'We see failed login attempts from {n} different IP addresses.',
      'We request a security review under our data processing agreement.',
      'The attacker may have downloaded the export of all {object} records.',
      'Our SOC flagged outbound traffic to {domain} from the integration.',
      'Please confirm that passwords are stored hashed and salted.',
      'A former contractor still has an active token with admin scope.',
      'The upload endpoint accepts an SVG with embedded JavaScript.',
    ],
    labels: ['security', 'incident', 'compliance', 'infosec', 'urgent'],
    filenames: ['pentest-report.pdf', 'security-questionnaire.pdf', 'incident-report.md', 'vulnerability-scan.txt', 'audit-findings.pdf'],
  },
  account: {
    summaries: [
      'Cannot log in after a password reset',
      'Please change the email address on my account',
      'Two-factor authentication code not arriving',
      'Delete my account and personal data',
      'Add {n} new users to our workspace',
      'Transfer ownership of the workspace to {name}',
      'Locked out after too many attempts',
      'SSO login redirects in a loop',
      'Merge two accounts into one',
      'Update the company name on our profile',
      'Invite link expired',
      'Remove former employee {name} from the team',
      'Change the admin of our organization',
      'Verification email never arrives',
    ],
    sentences: [
      'I changed my password yesterday and now the login page says my credentials are invalid.',
      'Our admin {name} left the company; please make {name} the owner.',
      'The verification email never arrives, also not in the spam folder.',
      'Under GDPR I request the deletion of all my personal data.',
      'We need to add {n} seats for the new team in {city}.',
      'My username is {user} and I registered with my work address.',
      'SSO with {idp} worked until today; now it loops back to the sign-in page.',
      'Please reset the two-factor authentication on my profile; I lost my phone.',
      'The invitation link says it has expired.',
      'Can you unlock my account, please?',
      'I have two accounts with different emails and want to keep only one.',
      'Please change the owner email to the shared team mailbox.',
      'The profile page does not let me change my display name.',
      'Our team members cannot see the workspace after accepting the invitation.',
      'I need admin rights to manage the users of our {department} team.',
    ],
    labels: ['account', 'login', 'sso', 'access', 'gdpr', 'users'],
    filenames: ['gdpr-request.pdf', 'user-list.txt', 'access-request.pdf', 'ownership-transfer.pdf', 'new-hires.txt'],
  },
  feature_request: {
    summaries: [
      'Feature request: dark mode for the {feature}',
      'Please add export to {format}',
      'Allow bulk editing of {object}s',
      'Support for {idp} single sign-on',
      'Integration with {tool}',
      'Add keyboard shortcuts to the {feature}',
      'It would be great to schedule reports',
      'Custom fields for {object}s',
      'API endpoint to list all {object}s',
      'Option to turn off email notifications per project',
      'Suggestion: filter {object}s by date',
      'Webhooks for {event} events',
      'Idea: templates for recurring {object}s',
      'Wish: offline mode for the mobile app',
    ],
    sentences: [
      'It would save our team a lot of time if we could do this in one step.',
      'Competitors like {competitor} already offer this.',
      'Our use case: we manage {n} {object}s and need to update them together.',
      'Ideally this would also be available through the API.',
      'Not a bug, just a suggestion for the roadmap.',
      'Is this on the roadmap? We would be happy to beta test it.',
      'Currently we work around this with a spreadsheet.',
      'Please consider adding a setting for this per workspace.',
      'This would really help our {department} department.',
      'Upvote from our whole team for this idea.',
      'An integration with {tool} would let us drop a manual step.',
      'It would be nice to choose the columns of the export.',
      'We would pay for this as an add-on.',
      'A dark theme would be easier on the eyes during night shifts.',
      'Could you add a way to pin favourite {object}s to the top?',
    ],
    labels: ['feature', 'enhancement', 'idea', 'ux', 'roadmap', 'integration'],
    filenames: ['feature-proposal.md', 'requirements.pdf', 'wishlist.txt', 'product-feedback.md', 'mockups.pdf'],
  },
};

/** Summaries that say nothing about the category: the model must read the description. */
const GENERIC_SUMMARIES = [
  'Need help',
  'Question',
  'Issue with {product}',
  'Urgent: please help',
  'Follow-up on my previous ticket',
  'Problem since this morning',
  'Request from {company}',
  'Please call me back',
];
const GREETINGS = ['Hi team,', 'Hello,', 'Dear support,', 'Hi there,', 'Good morning,'];
const CLOSINGS = ['Thanks in advance.', 'Best regards, {name}', 'Please advise.', 'This is urgent for us.', 'Kind regards, {name} from {company}'];
/** Lines every kind of document has: letterheads, page furniture, legal footers. */
const DOCUMENT_BOILERPLATE = [
  '{company} Ltd, {city}',
  'Page {n} of {n}',
  'Confidential - for internal use only.',
  'This document was generated automatically.',
  'Prepared by {name} for {company}.',
  'All rights reserved.',
  'Version {version}, last updated in {month}.',
];
const GENERIC_FILENAMES = ['scan0001.pdf', 'document.pdf', 'attachment.txt', 'notes.md', 'export.pdf', 'file.txt'];
const FIRST_NAMES = ['Anna', 'Ben', 'Chloe', 'David', 'Elif', 'Farid', 'Grace', 'Hiro', 'Ines', 'Jonas', 'Kofi', 'Lena', 'Mateo', 'Nadia', 'Omar', 'Priya', 'Rosa', 'Sven', 'Tariq', 'Zoe'];
const LAST_NAMES = ['Smith', 'Garcia', 'Mueller', 'Rossi', 'Kim', 'Silva', 'Okafor', 'Tanaka', 'Dubois', 'Novak', 'Patel', 'Cohen'];
const COMPANY_DOMAINS = ['acme.com', 'globex.io', 'initech.de', 'umbrella.co.uk', 'hooli.com', 'example.org'];
const PROJECTS = ['SUP', 'HELP', 'CS', 'OPS', 'WEB', 'MOB', 'API'];
const SOURCES: Record<EventType, string> = { [TICKET_CREATED]: 'jira-webhook', [DOCUMENT_UPLOADED]: 'ingest-api' };

const PRIORITY_WEIGHTS: Record<Category, Readonly<Record<Priority, number>>> = {
  security: { P1: 0.45, P2: 0.35, P3: 0.15, P4: 0.05 },
  bug: { P1: 0.1, P2: 0.35, P3: 0.4, P4: 0.15 },
  billing: { P1: 0.05, P2: 0.3, P3: 0.5, P4: 0.15 },
  account: { P1: 0.05, P2: 0.3, P3: 0.5, P4: 0.15 },
  feature_request: { P1: 0.01, P2: 0.09, P3: 0.4, P4: 0.5 },
};

const EXTRA_TICKET_FIELDS: ReadonlyArray<[string, (rng: Rng) => unknown]> = [
  ['jira_instance', (rng) => `${rng.pick(['acme', 'globex', 'initech'])}.atlassian.net`],
  ['customfield_10010', (rng) => rng.pick(['Tier 1', 'Tier 2', null])],
  ['watchers', (rng) => [rng.pick(FIRST_NAMES).toLowerCase(), rng.pick(FIRST_NAMES).toLowerCase()]],
  ['created_by_automation', (rng) => rng.chance(0.5)],
];
const EXTRA_DOCUMENT_FIELDS: ReadonlyArray<[string, (rng: Rng) => unknown]> = [
  ['uploaded_by', (rng) => `${rng.pick(FIRST_NAMES).toLowerCase()}@${rng.pick(COMPANY_DOMAINS)}`],
  ['size_bytes', (rng) => rng.int(1_000, 5_000_000)],
  ['extractor', () => 'pdftotext 24.02'],
];

// ---------------------------------------------------------------------------
// Small helpers.

function fill(rng: Rng, template: string): string {
  return template.replace(/\{(\w+)\}/g, (_, slot: string) => {
    const make = SLOTS[slot];
    if (make === undefined) throw new Error(`unknown template slot {${slot}}`);
    return make(rng);
  });
}

const KEYBOARD_NEIGHBOURS: Record<string, string> = {
  a: 'qs', b: 'vn', c: 'xv', d: 'sf', e: 'wr', f: 'dg', g: 'fh', h: 'gj', i: 'uo', j: 'hk', k: 'jl', l: 'k', m: 'n',
  n: 'bm', o: 'ip', p: 'o', q: 'w', r: 'et', s: 'ad', t: 'ry', u: 'yi', v: 'cb', w: 'qe', x: 'zc', y: 'tu', z: 'x',
};

/** One typing mistake in a word: swapped, dropped, doubled or neighbouring-key letter. */
function typo(rng: Rng, word: string): string {
  const i = rng.int(1, word.length - 2);
  switch (rng.int(0, 3)) {
    case 0:
      return word.slice(0, i) + word[i + 1] + word[i] + word.slice(i + 2);
    case 1:
      return word.slice(0, i) + word.slice(i + 1);
    case 2:
      return word.slice(0, i) + word[i] + word.slice(i);
    default: {
      const neighbours = KEYBOARD_NEIGHBOURS[word[i]!.toLowerCase()];
      return neighbours === undefined ? word : word.slice(0, i) + rng.pick([...neighbours]) + word.slice(i + 1);
    }
  }
}

/** Text with about TYPO_RATE of its longer plain words misspelled. */
function misspell(rng: Rng, text: string): string {
  return text.replace(/[A-Za-z]{4,}/g, (word) => (rng.chance(TYPO_RATE) ? typo(rng, word) : word));
}

function otherCategory(rng: Rng, category: Category): Category {
  return rng.pick(CATEGORIES.filter((candidate) => candidate !== category));
}

function sentences(rng: Rng, category: Category, count: number): string[] {
  return Array.from({ length: count }, () => misspell(rng, fill(rng, rng.pick(TEXT[category].sentences))));
}

/** Multi-line text as a producer might send it: CRLF line ends, a stray control character, padding. */
function messyText(rng: Rng, clean: string): string {
  let out = clean;
  if (rng.chance(0.3)) out = out.replace(/\n/g, '\r\n');
  if (rng.chance(0.04)) {
    const at = rng.int(0, out.length);
    const before = out.slice(0, at);
    // Never between CR and LF (that would leave a lone CR, a line break of its own).
    if (!before.endsWith('\r')) out = before + rng.pick(['\u0000', '\u0007', '\u001b', '\u007f', '\u0085']) + out.slice(at);
  }
  if (rng.chance(0.1)) out = rng.pick([' ', '\n', '\t ']) + out + rng.pick(['', ' ', '\r\n', '\n\n']);
  return out;
}

function messyLabel(rng: Rng, label: string): string {
  const roll = rng.next();
  const cased = roll < 0.6 ? label : roll < 0.85 ? label[0]!.toUpperCase() + label.slice(1) : label.toUpperCase();
  return rng.chance(0.05) ? ` ${cased} ` : cased;
}

/** The first `maxBytes` bytes' worth of `text` in whole code points, trimmed at the end. */
function cutUtf8(text: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char, 'utf8');
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return text.slice(0, end).trimEnd();
}

// ---------------------------------------------------------------------------
// Events.

const MAX_TEXT_BYTES = 65_536;

interface Drawn {
  category: Category;
  secondary: Category | null;
}

function drawCategories(rng: Rng): Drawn {
  const category = rng.weighted(CATEGORY_WEIGHTS);
  const secondary = rng.chance(MIXED_SHARE) ? otherCategory(rng, category) : null;
  return { category, secondary };
}

function makeTicket(rng: Rng, { category, secondary }: Drawn): { raw: Record<string, unknown>; clean: JiraTicket } {
  const text = TEXT[category];
  const summary = misspell(rng, fill(rng, rng.chance(0.12) ? rng.pick(GENERIC_SUMMARIES) : rng.pick(text.summaries)));

  let description: string | null = null;
  if (rng.chance(0.82)) {
    const body = sentences(rng, category, rng.int(1, 5));
    if (secondary !== null) {
      const mixed = sentences(rng, secondary, rng.int(1, 2));
      body.splice(rng.int(0, body.length), 0, ...mixed);
    }
    const parts = [...(rng.chance(0.4) ? [rng.pick(GREETINGS)] : []), body.join(' '), ...(rng.chance(0.4) ? [fill(rng, rng.pick(CLOSINGS))] : [])];
    description = parts.join(rng.chance(0.5) ? '\n\n' : '\n');
  }

  const labels: string[] = [];
  if (rng.chance(0.45)) {
    const pool = [...text.labels, ...(secondary === null ? [] : TEXT[secondary].labels), 'customer', 'enterprise', 'urgent', 'triage'];
    for (const label of shuffled(rng, pool).slice(0, rng.int(1, 3))) if (!labels.includes(label)) labels.push(label);
  }
  const rawLabels = labels.map((label) => messyLabel(rng, label));
  if (labels.length > 0 && rng.chance(0.2)) rawLabels.push(messyLabel(rng, rng.pick(labels))); // a duplicate in other case

  const email = rng.chance(0.75)
    ? `${rng.pick(FIRST_NAMES).toLowerCase()}.${rng.pick(LAST_NAMES).toLowerCase()}@${rng.pick(COMPANY_DOMAINS)}`
    : null;
  const priority = rng.chance(0.45) ? rng.weighted(PRIORITY_WEIGHTS[category]) : null;
  const project = rng.pick(PROJECTS);
  const clean: JiraTicket = {
    ticket_key: `${project}-${rng.int(1, 99_999)}`,
    project,
    summary,
    description,
    reporter_email: email,
    labels,
    priority_hint: priority,
  };

  const raw: Record<string, unknown> = {
    ticket_key: clean.ticket_key,
    project: rng.chance(0.05) ? ` ${project}` : project,
    summary: rng.chance(0.08) ? rng.pick([` ${summary}`, `${summary} `, `${summary}\n`]) : summary,
  };
  if (description !== null) raw['description'] = messyText(rng, description);
  else if (rng.chance(0.3)) raw['description'] = rng.pick(['', null, '  \r\n']);
  if (email !== null) {
    const roll = rng.next();
    const spelled = roll < 0.1 ? email.toUpperCase() : roll < 0.25 ? email[0]!.toUpperCase() + email.slice(1) : email;
    raw['reporter_email'] = rng.chance(0.05) ? ` ${spelled} ` : spelled;
  }
  if (rawLabels.length > 0) raw['labels'] = rawLabels;
  else if (rng.chance(0.2)) raw['labels'] = rng.chance(0.5) ? [] : null;
  if (priority !== null) raw['priority_hint'] = priority;
  return { raw, clean };
}

function makeDocument(rng: Rng, { category, secondary }: Drawn): { raw: Record<string, unknown>; clean: UploadedDocument } {
  const text = TEXT[category];
  const filename = fill(rng, rng.chance(0.35) ? rng.pick(GENERIC_FILENAMES) : rng.pick(text.filenames)).replace(/\s+/g, '-');
  const extension = filename.slice(filename.lastIndexOf('.') + 1);
  const contentType: ContentType = extension === 'pdf' ? 'application/pdf' : extension === 'md' ? 'text/markdown' : 'text/plain';

  // Paragraphs of category sentences among boilerplate; a few documents run past 64 KiB and are cut.
  const long = rng.chance(0.04);
  const targetChars = long ? rng.int(70_000, 110_000) : Math.round(Math.exp(rng.next() * Math.log(12_000 / 300)) * 300);
  const paragraphs: string[] = [fill(rng, rng.pick(DOCUMENT_BOILERPLATE))];
  let size = paragraphs[0]!.length;
  while (size < targetChars) {
    const body = sentences(rng, category, rng.int(2, 6));
    if (secondary !== null && rng.chance(0.3)) body.push(...sentences(rng, secondary, 1));
    if (rng.chance(0.3)) body.push(fill(rng, rng.pick(DOCUMENT_BOILERPLATE)));
    const paragraph = body.join(' ');
    paragraphs.push(paragraph);
    size += paragraph.length + 2;
  }
  const full = paragraphs.join('\n\n');
  const cut = cutUtf8(full, MAX_TEXT_BYTES);
  const pdf = contentType === 'application/pdf';
  const clean: UploadedDocument = {
    document_id: `doc_${hex(rng, 20)}`,
    filename,
    content_type: contentType,
    sha256: createHash('sha256').update(full, 'utf8').digest('hex'),
    pages: pdf ? Math.max(1, Math.ceil(full.length / 3_000) + rng.int(0, 2)) : null,
    text: cut,
    text_truncated: cut.length < full.length,
  };

  const spelledType =
    rng.chance(0.15) && !pdf ? `${contentType}; charset=utf-8` : rng.chance(0.05) ? contentType.toUpperCase() : contentType;
  const raw: Record<string, unknown> = {
    document_id: clean.document_id,
    filename: clean.filename,
    content_type: spelledType,
    sha256: clean.sha256,
    // Windows line ends would push a text near the limit over it in raw form; only short texts get them.
    text: clean.text_truncated ? clean.text : messyText(rng, clean.text),
    text_truncated: clean.text_truncated,
  };
  if (pdf) raw['pages'] = clean.pages;
  else if (rng.chance(0.5)) raw['pages'] = null;
  return { raw, clean };
}

function addExtras(rng: Rng, raw: Record<string, unknown>, extras: ReadonlyArray<[string, (rng: Rng) => unknown]>): string[] {
  if (!rng.chance(0.25)) return [];
  const chosen = shuffled(rng, extras).slice(0, rng.int(1, 2));
  for (const [name, make] of chosen) raw[name] = make(rng);
  return chosen.map(([name]) => name).sort();
}

/** One event, a function of (seed, index) and the options alone; `forceType` only for malformed samples. */
function makeEvent(seed: number, index: number, startMs: number, spacingMs: number, idPrefix: string, forceType?: EventType): GeneratedTicketEvent {
  const rng = createRng(seed, index);
  const drawnType: EventType = rng.chance(DOCUMENT_SHARE) ? DOCUMENT_UPLOADED : TICKET_CREATED;
  const eventType = forceType ?? drawnType;
  const drawn = drawCategories(rng);
  const occurredAtMs = startMs + index * spacingMs;
  const eventId = `${idPrefix}-${seed}-${index}`;

  let payload: TicketTriagePayload;
  let raw: Record<string, unknown>;
  let key: string;
  let droppedFields: string[];
  if (eventType === TICKET_CREATED) {
    const ticket = makeTicket(rng, drawn);
    payload = { ticket: ticket.clean, document: null };
    raw = ticket.raw;
    key = ticket.clean.ticket_key;
    droppedFields = addExtras(rng, raw, EXTRA_TICKET_FIELDS);
  } else {
    const document = makeDocument(rng, drawn);
    payload = { ticket: null, document: document.clean };
    raw = document.raw;
    key = document.clean.document_id;
    droppedFields = addExtras(rng, raw, EXTRA_DOCUMENT_FIELDS);
  }
  const category = rng.chance(LABEL_NOISE) ? otherCategory(rng, drawn.category) : drawn.category;
  const envelope: RawEnvelope = {
    event_id: eventId,
    event_type: eventType,
    occurred_at: spellTimestamp(rng, occurredAtMs),
    source: SOURCES[eventType],
    payload: raw,
  };
  return {
    index,
    eventId,
    eventType,
    key,
    value: envelopeBytes(envelope),
    occurredAtMs,
    envelope,
    payload,
    droppedFields,
    category,
    drawnFrom: drawn.category,
    secondary: drawn.secondary,
  };
}

/** The JSON bytes a producer puts on `ticket-triage.raw` for an envelope. */
export const envelopeBytes = (envelope: RawEnvelope): Buffer => Buffer.from(JSON.stringify(envelope), 'utf8');

/** `count` events from `firstIndex` on; each a function of (seed, index). */
export function* generateTicketEvents(options: GenerateOptions): Generator<GeneratedTicketEvent> {
  const { seed, count, startMs, spacingMs, idPrefix, firstIndex } = generateRange(options);
  for (let index = firstIndex; index < firstIndex + count; index++) yield makeEvent(seed, index, startMs, spacingMs, idPrefix);
}

// ---------------------------------------------------------------------------
// Malformed input.

type Mutation = (envelope: Record<string, unknown>, payload: Record<string, unknown>) => void;

/**
 * One message per class of bad input, each with the dead-letter reason it must
 * get. Apart from its one defect each is a valid event, so a validator that
 * routes it anywhere but the dead-letter topic with that reason has a bug.
 */
export function malformedSamples(options: MalformedOptions): MalformedSample[] {
  const { maxMessageBytes, idPrefix = 'evt', seed = 0, occurredAtMs = Date.UTC(2026, 10, 1) } = options;
  const samples: MalformedSample[] = [];
  let index = 0;
  const base = (type: EventType): RawEnvelope => structuredClone(makeEvent(seed, index++, occurredAtMs, 1_000, idPrefix, type).envelope);
  const keyOf = (name: string) => `${idPrefix}-bad-${name}`;
  const bytes = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8');
  const raw = (name: string, reason: DeadLetterReason, value: Buffer | null, eventId: string | null = null) => {
    samples.push({ name, reason, field: null, eventId, key: keyOf(name), value });
  };
  const mutated = (name: string, type: EventType, reason: DeadLetterReason, field: string, mutate: Mutation) => {
    const envelope = { ...base(type), event_id: keyOf(name) } as unknown as Record<string, unknown>;
    mutate(envelope, envelope['payload'] as Record<string, unknown>);
    samples.push({ name, reason, field, eventId: keyOf(name), key: keyOf(name), value: bytes(envelope) });
  };
  const ticket = (name: string, field: string, mutate: (payload: Record<string, unknown>) => void) =>
    mutated(name, TICKET_CREATED, 'SCHEMA_VIOLATION', `payload.${field}`, (_, p) => mutate(p));
  const document = (name: string, field: string, mutate: (payload: Record<string, unknown>) => void) =>
    mutated(name, DOCUMENT_UPLOADED, 'SCHEMA_VIOLATION', `payload.${field}`, (_, p) => mutate(p));
  const validJson = (name: string) => JSON.stringify({ ...base(TICKET_CREATED), event_id: keyOf(name) });

  const truncated = validJson('not-json');
  raw('not-json', 'MALFORMED_PAYLOAD', Buffer.from(truncated.slice(0, Math.floor(truncated.length / 2)), 'utf8'));
  // An invalid UTF-8 sequence inside the summary.
  raw('invalid-utf8', 'MALFORMED_PAYLOAD', withInvalidUtf8(validJson('invalid-utf8'), '"summary":"'));
  raw('json-array', 'MALFORMED_PAYLOAD', Buffer.from(`[${validJson('json-array')}]`, 'utf8'));
  raw('empty', 'MALFORMED_PAYLOAD', Buffer.alloc(0));
  raw('tombstone', 'MALFORMED_PAYLOAD', null);

  ticket('missing-summary', 'summary', (p) => {
    delete p['summary'];
  });
  ticket('blank-summary', 'summary', (p) => {
    p['summary'] = ' \t\r\n ';
  });
  ticket('summary-256-chars', 'summary', (p) => {
    p['summary'] = `Refund request ${'x'.repeat(241)}`;
  });
  ticket('summary-not-string', 'summary', (p) => {
    p['summary'] = 42;
  });
  ticket('summary-lone-surrogate', 'summary', (p) => {
    p['summary'] = 'Broken emoji \ud83d in summary';
  });
  ticket('description-over-32kib', 'description', (p) => {
    // One byte over 32 KiB after normalization: it ends in a character trimming keeps.
    p['description'] = `${'The export job failed again with the same error.\n'.repeat(700).slice(0, 32_768)}!`;
  });
  ticket('bad-ticket-key', 'ticket_key', (p) => {
    p['ticket_key'] = 'sup-0012';
  });
  ticket('missing-project', 'project', (p) => {
    delete p['project'];
  });
  ticket('labels-not-array', 'labels', (p) => {
    p['labels'] = 'billing,urgent';
  });
  ticket('labels-21', 'labels', (p) => {
    p['labels'] = Array.from({ length: 21 }, (_, i) => `label-${i}`);
  });
  ticket('label-empty', 'labels', (p) => {
    p['labels'] = ['billing', '  '];
  });
  ticket('label-65-chars', 'labels', (p) => {
    p['labels'] = ['l'.repeat(65)];
  });
  ticket('priority-hint-out-of-domain', 'priority_hint', (p) => {
    p['priority_hint'] = 'urgent';
  });
  ticket('reporter-email-invalid', 'reporter_email', (p) => {
    p['reporter_email'] = 'anna at acme.com';
  });

  document('document-missing-id', 'document_id', (p) => {
    delete p['document_id'];
  });
  document('document-filename-path', 'filename', (p) => {
    p['filename'] = '../../etc/passwd';
  });
  document('document-content-type', 'content_type', (p) => {
    p['content_type'] = 'image/png';
  });
  document('document-sha256-upper-case', 'sha256', (p) => {
    p['sha256'] = String(p['sha256']).toUpperCase();
  });
  document('document-sha256-short', 'sha256', (p) => {
    p['sha256'] = String(p['sha256']).slice(0, 40);
  });
  document('document-pages-zero', 'pages', (p) => {
    p['pages'] = 0;
  });
  document('document-pages-fraction', 'pages', (p) => {
    p['pages'] = 2.5;
  });
  document('document-text-missing', 'text', (p) => {
    delete p['text'];
  });
  document('document-text-over-64kib', 'text', (p) => {
    p['text'] = `${'Page 1 of 1. Invoice total due.\n'.repeat(2_100).slice(0, 65_536)}!`;
  });
  document('document-truncated-not-boolean', 'text_truncated', (p) => {
    p['text_truncated'] = 'false';
  });

  mutated('payload-not-object', TICKET_CREATED, 'SCHEMA_VIOLATION', 'payload', (e) => {
    e['payload'] = 'ticket created';
  });
  mutated('unexpected-event-type', TICKET_CREATED, 'UNEXPECTED_EVENT_TYPE', 'event_type', (e) => {
    e['event_type'] = 'jira_ticket_updated';
  });

  samples.push(oversizedSample(samples, maxMessageBytes, { ...base(TICKET_CREATED), event_id: keyOf('oversized') }, keyOf('oversized')));
  return samples;
}

export const ticketTriageGenerator: TrafficGenerator = {
  events: generateTicketEvents,
  malformed: malformedSamples,
};
