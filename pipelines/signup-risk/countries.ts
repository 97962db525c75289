/**
 * ISO 3166-1 alpha-2: the 249 officially assigned codes (ISO 3166 Maintenance
 * Agency, current list; reserved and withdrawn codes such as UK, EU, AN or YU are
 * not assigned and are not here).
 */
export const ISO_3166_1_ALPHA_2: ReadonlySet<string> = new Set(
  [
    'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ',
    'BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ',
    'CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ',
    'DE DJ DK DM DO DZ',
    'EC EE EG EH ER ES ET',
    'FI FJ FK FM FO FR',
    'GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY',
    'HK HM HN HR HT HU',
    'ID IE IL IM IN IO IQ IR IS IT',
    'JE JM JO JP',
    'KE KG KH KI KM KN KP KR KW KY KZ',
    'LA LB LC LI LK LR LS LT LU LV LY',
    'MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ',
    'NA NC NE NF NG NI NL NO NP NR NU NZ',
    'OM',
    'PA PE PF PG PH PK PL PM PN PR PS PT PW PY',
    'QA',
    'RE RO RS RU RW',
    'SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ',
    'TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ',
    'UA UG UM US UY UZ',
    'VA VC VE VG VI VN VU',
    'WF WS',
    'YE YT',
    'ZA ZM ZW',
  ]
    .join(' ')
    .split(' '),
);

/**
 * Codes a signup may carry: the assigned codes plus XK (Kosovo). XK is a
 * user-assigned code, but the European Commission, IP-geolocation databases and
 * most address forms use it; rejecting it would dead-letter every signup from
 * Kosovo.
 */
export const COUNTRY_CODES: ReadonlySet<string> = new Set([...ISO_3166_1_ALPHA_2, 'XK']);

/**
 * The upper-case code when `value` is two ASCII letters (any case) naming a
 * code in COUNTRY_CODES, otherwise null. Only ASCII letters are case-folded, so
 * look-alike characters never fold into a valid code.
 */
export function normalizeCountryCode(value: string): string | null {
  return BY_SPELLING.get(value) ?? null;
}

/** Every spelling normalizeCountryCode accepts (each code in its four ASCII casings), to its code: one lookup per field. */
const BY_SPELLING: ReadonlyMap<string, string> = new Map(
  [...COUNTRY_CODES].flatMap((code) => {
    const [a, b] = [code[0]!, code[1]!];
    return [code, a + b.toLowerCase(), a.toLowerCase() + b, code.toLowerCase()].map((spelling) => [spelling, code] as const);
  }),
);
