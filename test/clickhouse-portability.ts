/**
 * SQL that one of the two ClickHouse versions sluice supports rejects
 * (PRODUCT.md): 18.16, the local stack's, and current, docker-compose's. The
 * unit tests of every SQL sluice ships (migrations, documented and monitor
 * queries) check it against this list; the integration tests run it on both.
 */
export const NOT_ON_BOTH = [
  [/DateTime64/, 'DateTime64'],
  [/\bMap\(/, 'Map'],
  [/LowCardinality/, 'LowCardinality'],
  [/\bTTL\b/, 'TTL'],
  [/\bOVER\s*\(/i, 'window functions'],
  [/toStartOfInterval/, 'toStartOfInterval'],
  [/startsWith|endsWith/, 'startsWith/endsWith (not on 18.16: position() instead)'],
  [/\{\w+:\w+\}/, 'query parameters (18.16 has none: scopedSql binds them)'],
  [/CREATE USER/i, 'CREATE USER (18.16 has no SQL user management)'],
  [/ADD COLUMN IF NOT EXISTS/i, 'ADD COLUMN IF NOT EXISTS (not on 18.16)'],
] as const;
