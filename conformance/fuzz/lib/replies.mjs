// @ts-check
/**
 * Replies as units, the values in them that depend on the clock or the
 * process (never compared), and their form as conformance expectations.
 *
 * A reply is one line, plus `<n> + 2` bytes of body after `RESERVED id n`,
 * `FOUND id n` and `OK n`. Normalising a reply replaces each varying value
 * with a marker, so two servers' replies compare equal exactly when they
 * agree on everything else.
 */

const BODY_LINE = /^(?:(?:RESERVED|FOUND) \d+ |OK )(\d+)$/;

/**
 * Splits a byte stream into whole replies; the rest is incomplete.
 * @param {Buffer} buf @param {number} from
 * @returns {{replies: Buffer[], used: number}}
 */
export function splitReplies(buf, from = 0) {
  /** @type {Buffer[]} */
  const replies = [];
  let pos = from;
  for (;;) {
    const cr = buf.indexOf('\r\n', pos, 'latin1');
    if (cr === -1) break;
    const line = buf.toString('latin1', pos, cr);
    const m = BODY_LINE.exec(line);
    const end = m ? cr + 2 + Number(m[1]) + 2 : cr + 2;
    if (end > buf.length) break;
    replies.push(buf.subarray(pos, end));
    pos = end;
  }
  return { replies, used: pos - from };
}

/**
 * Keys whose values vary with time or process, per YAML document kind, and
 * the conformance placeholder each becomes in a reproducer.
 * @type {Record<string, Record<string, string>>}
 */
const VARYING = {
  stats: {
    pid: '{=pid}', 'rusage-utime': '{float6}', 'rusage-stime': '{float6}', uptime: '{int}', id: '{hex16}',
    hostname: '{=hostname}', os: '{=os}', platform: '{=platform}',
  },
  job: { age: '{int}', 'time-left': '{int}' },
  tube: { 'pause-time-left': '{int}' },
};

/** Extra keys that differ on purpose with -b (docs/COMPAT.md#binlog-format, #release-journaled). */
const VARYING_BINLOG = {
  stats: { 'binlog-records-written': '{int}', 'binlog-records-migrated': '{int}' },
  job: { file: '{int}' },
};

/** @param {string} body */
function docKind(body) {
  if (body.startsWith('---\ncurrent-jobs-urgent: ')) return 'stats';
  if (body.startsWith('---\nid: ')) return 'job';
  if (body.startsWith('---\nname: ')) return 'tube';
  return null;
}

/**
 * The reply with varying values replaced by `mark(key, placeholder)`, and the
 * `OK <n>` length by `len` (after checking it is the body's length).
 * @param {Buffer} reply @param {NormOptions} opts
 * @param {(key: string, placeholder: string, value: string) => string} mark
 * @param {string} len what `OK <n>` becomes
 * @returns {string} latin1
 */
function rewrite(reply, opts, mark, len) {
  const text = reply.toString('latin1');
  const m = /^OK (\d+)\r\n([\s\S]*)\r\n$/.exec(text);
  if (!m) return text;
  const body = /** @type {string} */ (m[2]);
  const kind = docKind(body);
  if (kind === null) return text;
  if (Number(m[1]) !== Buffer.byteLength(body, 'latin1')) return text; // a framing error: compare raw
  /** @type {Record<string, string>} */
  const keys = { ...VARYING[kind], ...(opts.binlog ? VARYING_BINLOG[/** @type {'stats' | 'job'} */ (kind)] : {}) };
  for (const k of opts.ignore ?? []) keys[k] ??= '{str}';
  const out = body.replace(/^([a-z-]+): (.*)$/gm, (all, key, value) => {
    const ph = keys[key];
    return ph === undefined ? all : `${key}: ${mark(key, ph, value)}`;
  });
  return `OK ${len}\r\n${out}\r\n`;
}

/**
 * @typedef {{binlog: boolean, ignore?: string[], arriving?: Map<number, number>}} NormOptions
 *   `ignore`: more YAML keys not to compare (`--ignore`, e.g. to look past a
 *   known difference); `arriving`: puts whose body is still arriving, id ->
 *   bytes in so far
 */

/**
 * For comparison: varying values become `<key>`. A `peek` of a job whose
 * body is still arriving shows, after the bytes in so far, whatever the
 * reference's memory held (docs/COMPAT.md#peek-arriving-body): not compared.
 * @param {Buffer} reply @param {NormOptions} opts
 */
export function normalize(reply, opts) {
  const m = /^FOUND (\d+) \d+\r\n/.exec(reply.toString('latin1', 0, 40));
  const arrived = m ? opts.arriving?.get(Number(m[1])) : undefined;
  if (m && arrived !== undefined) return `${reply.toString('latin1', 0, m[0].length + arrived)}<unset>`;
  return rewrite(reply, opts, (key) => `<${key}>`, '<len>');
}

/**
 * Escapes bytes for a scenario line (conformance/README.md "Escapes").
 * @param {string} latin1
 */
export function escapeScenario(latin1) {
  let out = '';
  for (let i = 0; i < latin1.length; i++) {
    const c = latin1.charCodeAt(i);
    const ch = latin1[i];
    if (ch === '\r') out += '\\r';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (c === 0) out += '\\0';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '{') out += '\\{';
    else if (ch === '}') out += '\\}';
    else if (c < 0x20 || c >= 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  // A trailing space would be taken for trailing whitespace.
  return out.endsWith(' ') ? `${out.slice(0, -1)}\\x20` : out;
}

/**
 * One reply as a scenario expectation: escaped bytes, placeholders for the
 * varying values and `{len}` for the YAML length.
 * @param {Buffer} reply @param {NormOptions} opts
 */
export function expectation(reply, opts) {
  const PH = '\u0001';
  // Placeholders survive escaping as control bytes, then become themselves again.
  /** @type {string[]} */
  const phs = [];
  const text = rewrite(reply, opts, (_key, ph) => {
    phs.push(ph);
    return PH;
  }, '\u0002');
  let out = escapeScenario(text);
  if (out.startsWith('OK \\x02')) out = `OK {len}${out.slice('OK \\x02'.length)}`;
  for (const ph of phs) out = out.replace('\\x01', ph);
  return out;
}
