// @ts-check
// Incremental matching of received bytes against an expectation pattern.

/** @typedef {import('./scenario.mjs').Segment} Segment */

/**
 * @typedef {{status: 'ok', length: number}
 *   | {status: 'partial'}
 *   | {status: 'mismatch', reason: string}} MatchResult
 */

const isDigit = (/** @type {number} */ b) => b >= 0x30 && b <= 0x39;
const isHex = (/** @type {number} */ b) => isDigit(b) || (b >= 0x61 && b <= 0x66);

/**
 * Match `buf` from its start against `segs`.
 * `partial` means the bytes so far are consistent with the pattern but more are needed.
 * @param {Segment[]} segs
 * @param {Buffer} buf
 * @param {Record<string, string>} vars values for {=name} placeholders
 * @returns {MatchResult}
 */
export function matchPattern(segs, buf, vars) {
  let pos = 0;
  /** @type {Array<{value: number, end: number}>} */
  const lens = [];
  for (const seg of segs) {
    switch (seg.kind) {
      case 'lit':
      case 'var': {
        const bytes = seg.kind === 'lit' ? seg.bytes : Buffer.from(vars[seg.name] ?? `\u0000{=${seg.name}}`, 'latin1');
        for (let k = 0; k < bytes.length; k++) {
          if (pos + k >= buf.length) return { status: 'partial' };
          if (buf[pos + k] !== bytes[k]) return { status: 'mismatch', reason: `byte ${pos + k} differs` };
        }
        pos += bytes.length;
        break;
      }
      case 'int':
      case 'len': {
        const start = pos;
        while (pos < buf.length && isDigit(/** @type {number} */ (buf[pos]))) pos++;
        if (pos >= buf.length) return { status: 'partial' };
        if (pos === start) return { status: 'mismatch', reason: `no digits at byte ${start}` };
        const digits = buf.subarray(start, pos).toString('latin1');
        if (digits.length > 1 && digits[0] === '0') return { status: 'mismatch', reason: `leading zero in "${digits}"` };
        const value = Number(digits);
        if (seg.kind === 'int' && (value < seg.min || value > seg.max)) {
          return { status: 'mismatch', reason: `${digits} not in ${seg.min}..${seg.max}` };
        }
        if (seg.kind === 'len') lens.push({ value, end: pos });
        break;
      }
      case 'hex16': {
        for (let k = 0; k < 16; k++) {
          if (pos >= buf.length) return { status: 'partial' };
          if (!isHex(/** @type {number} */ (buf[pos]))) return { status: 'mismatch', reason: `not 16 lowercase hex digits at byte ${pos}` };
          pos++;
        }
        break;
      }
      case 'float6': {
        const start = pos;
        while (pos < buf.length && isDigit(/** @type {number} */ (buf[pos]))) pos++;
        if (pos >= buf.length) return { status: 'partial' };
        if (pos === start || buf[pos] !== 0x2e) return { status: 'mismatch', reason: `not secs.micros at byte ${start}` };
        pos++;
        for (let k = 0; k < 6; k++) {
          if (pos >= buf.length) return { status: 'partial' };
          if (!isDigit(/** @type {number} */ (buf[pos]))) return { status: 'mismatch', reason: `want 6 fraction digits at byte ${start}` };
          pos++;
        }
        break;
      }
      case 'quoted': {
        // "..." with at least one byte inside and no CR, LF or quote (the version string).
        const start = pos;
        if (pos >= buf.length) return { status: 'partial' };
        if (buf[pos] !== 0x22) return { status: 'mismatch', reason: `want a quoted string at byte ${start}` };
        pos++;
        while (pos < buf.length && buf[pos] !== 0x22 && buf[pos] !== 0x0d && buf[pos] !== 0x0a) pos++;
        if (pos >= buf.length) return { status: 'partial' };
        if (buf[pos] !== 0x22 || pos === start + 1) return { status: 'mismatch', reason: `bad quoted string at byte ${start}` };
        pos++;
        break;
      }
      case 'str': {
        const start = pos;
        while (pos < buf.length && buf[pos] !== 0x0d && buf[pos] !== 0x0a) pos++;
        if (pos >= buf.length) return { status: 'partial' };
        if (pos === start) return { status: 'mismatch', reason: `empty string at byte ${start}` };
        break;
      }
    }
  }
  for (const l of lens) {
    // The counted body starts after the CRLF that follows the number and ends
    // before the final CRLF of the matched bytes.
    const crlf = buf.indexOf('\r\n', l.end, 'latin1');
    if (crlf < 0 || crlf + 2 > pos - 2 || buf[pos - 2] !== 0x0d || buf[pos - 1] !== 0x0a) {
      return { status: 'mismatch', reason: '{len} needs "...\\r\\n<body>\\r\\n"' };
    }
    const actual = pos - 2 - (crlf + 2);
    if (actual !== l.value) return { status: 'mismatch', reason: `length field says ${l.value} but body has ${actual} bytes` };
  }
  return { status: 'ok', length: pos };
}

/**
 * Printable form of bytes: JSON string escapes, bytes >= 0x7f as \u00XX.
 * @param {Buffer | string} data
 */
export function show(data) {
  const s = typeof data === 'string' ? data : data.toString('latin1');
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
