// @ts-check
// Parser for conformance scenario files. See conformance/README.md for the format.

/**
 * @typedef {{kind: 'lit', bytes: Buffer}
 *   | {kind: 'int', min: number, max: number}
 *   | {kind: 'hex16'} | {kind: 'float6'} | {kind: 'str'} | {kind: 'quoted'} | {kind: 'len'}
 *   | {kind: 'var', name: string}} Segment
 *
 * @typedef {{min: number, max: number}} Window
 *
 * @typedef {{op: 'send', conn: string, data: SendData}
 *   | {op: 'expect', conn: string, segs: Segment[], text: string, window: Window | null}
 *   | {op: 'none', conn: string, ms: number}
 *   | {op: 'eof', conn: string, window: Window | null}
 *   | {op: 'open' | 'close' | 'halfclose', conn: string}
 *   | {op: 'wait', ms: number}
 *   | {op: 'mark'}
 *   | {op: 'signal', sig: NodeJS.Signals}
 *   | {op: 'restart' | 'stop' | 'kill9' | 'start' | 'stalesock'}
 *   | {op: 'file', path: string, check: 'exists' | 'absent' | 'size', size: number}} StepBody
 *
 * @typedef {StepBody & {line: number, flavor: 'ref' | 'tsb' | null}} Step
 *
 * @typedef {{
 *   file: string, name: string, description: string, ref: string | null,
 *   args: string[], tags: string[], compat: string | null, timeoutMs: number,
 *   manualStart: boolean, steps: Step[]
 * }} Scenario
 */

export class ParseError extends Error {
  /** @param {number} line @param {string} message */
  constructor(line, message) {
    super(message);
    this.line = line;
  }
}

const SIMPLE_ESCAPES = /** @type {Record<string, string>} */ ({
  r: '\r', n: '\n', t: '\t', '0': '\0', '\\': '\\', '{': '{', '}': '}',
});

/**
 * Decode backslash escapes into a latin1 string (one char per byte).
 * @param {string} s @param {number} line
 */
function unescapeText(s, line) {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch !== '\\') {
      const code = s.charCodeAt(i);
      if (code > 0x7e || code < 0x20) throw new ParseError(line, `raw byte 0x${code.toString(16)} in text; use \\xHH`);
      out += ch;
      continue;
    }
    const nx = s[i + 1];
    if (nx === undefined) throw new ParseError(line, 'dangling backslash');
    if (nx === 'x') {
      const hex = s.slice(i + 2, i + 4);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new ParseError(line, `bad \\x escape "\\x${hex}"`);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 3;
      continue;
    }
    const rep = SIMPLE_ESCAPES[nx];
    if (rep === undefined) throw new ParseError(line, `unknown escape "\\${nx}"`);
    out += rep;
    i += 1;
  }
  return out;
}

/**
 * Split text into raw chunks and {...} directives, honouring \{ and \}.
 * @param {string} s @param {number} line
 * @returns {Array<{brace: boolean, text: string}>}
 */
function splitBraces(s, line) {
  /** @type {Array<{brace: boolean, text: string}>} */
  const parts = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\') {
      cur += ch + (s[i + 1] ?? '');
      i += 1;
    } else if (ch === '{') {
      let j = i + 1;
      let inner = '';
      while (j < s.length && s[j] !== '}') {
        if (s[j] === '\\') { inner += s[j] + (s[j + 1] ?? ''); j += 2; } else { inner += s[j]; j += 1; }
      }
      if (j >= s.length) throw new ParseError(line, 'unclosed "{"');
      if (cur) parts.push({ brace: false, text: cur });
      cur = '';
      parts.push({ brace: true, text: inner });
      i = j;
    } else if (ch === '}') {
      throw new ParseError(line, 'stray "}"; write \\} for a literal brace');
    } else {
      cur += ch;
    }
  }
  if (cur) parts.push({ brace: false, text: cur });
  return parts;
}

/**
 * `{N*text}` repetition: returns the repeated decoded text or null.
 * @param {string} inner @param {number} line
 */
function repetition(inner, line) {
  const m = /^(\d+)\*(.+)$/s.exec(inner);
  if (!m) return null;
  return unescapeText(m[2] ?? '', line).repeat(Number(m[1]));
}

/**
 * @typedef {{bytes: Buffer, times: number}} DataPart
 * @typedef {{parts: DataPart[], length: number}} SendData
 */

const INLINE_LIMIT = 1 << 20;

/**
 * Bytes to send: escapes plus `{N*text}` repetition; no placeholders.
 * Huge repetitions stay as (chunk, times) pairs instead of one giant buffer.
 * @param {string} s @param {number} line
 * @returns {SendData}
 */
export function parseSendData(s, line) {
  /** @type {DataPart[]} */
  const parts = [];
  let cur = '';
  const flush = () => { if (cur) parts.push({ bytes: Buffer.from(cur, 'latin1'), times: 1 }); cur = ''; };
  for (const p of splitBraces(s, line)) {
    if (!p.brace) { cur += unescapeText(p.text, line); continue; }
    const m = /^(\d+)\*(.+)$/s.exec(p.text);
    if (!m) throw new ParseError(line, `unknown directive "{${p.text}}" in data to send`);
    const unit = unescapeText(m[2] ?? '', line);
    const n = Number(m[1]);
    if (unit.length * n <= INLINE_LIMIT) { cur += unit.repeat(n); continue; }
    flush();
    const k = Math.max(1, Math.floor(INLINE_LIMIT / unit.length));
    parts.push({ bytes: Buffer.from(unit.repeat(k), 'latin1'), times: Math.floor(n / k) });
    if (n % k) parts.push({ bytes: Buffer.from(unit.repeat(n % k), 'latin1'), times: 1 });
  }
  flush();
  return { parts, length: parts.reduce((a, p) => a + p.bytes.length * p.times, 0) };
}

const VARS = new Set(['pid', 'hostname', 'os', 'platform', 'port']);

/**
 * Expected bytes with placeholders.
 * @param {string} s @param {number} line
 * @returns {Segment[]}
 */
export function parsePattern(s, line) {
  /** @type {Segment[]} */
  const segs = [];
  let lit = '';
  const flush = () => {
    if (lit) segs.push({ kind: 'lit', bytes: Buffer.from(lit, 'latin1') });
    lit = '';
  };
  for (const p of splitBraces(s, line)) {
    if (!p.brace) { lit += unescapeText(p.text, line); continue; }
    const rep = repetition(p.text, line);
    if (rep !== null) { lit += rep; continue; }
    const t = p.text;
    let m;
    flush();
    if (t === 'int') segs.push({ kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER });
    else if ((m = /^int:(\d+)\.\.(\d+)$/.exec(t))) segs.push({ kind: 'int', min: Number(m[1]), max: Number(m[2]) });
    else if (t === 'hex16' || t === 'float6' || t === 'str' || t === 'quoted' || t === 'len') segs.push({ kind: t });
    else if (t.startsWith('=') && VARS.has(t.slice(1))) segs.push({ kind: 'var', name: t.slice(1) });
    else throw new ParseError(line, `unknown placeholder "{${t}}"`);
  }
  flush();
  for (let i = 1; i < segs.length; i++) {
    const a = segs[i - 1];
    const b = segs[i];
    if (a && b && a.kind !== 'lit' && a.kind !== 'var' && b.kind !== 'lit' && b.kind !== 'var') {
      throw new ParseError(line, 'two placeholders must be separated by literal text');
    }
  }
  const last = segs[segs.length - 1];
  if (last && last.kind !== 'lit' && last.kind !== 'var') {
    throw new ParseError(line, 'an expectation must end with literal text (e.g. \\r\\n)');
  }
  return segs;
}

/** @param {string} s @param {number} line @returns {Window | null} */
function parseWindow(s, line) {
  if (s === undefined || s === '') return null;
  const m = /^(\d+)\.\.(\d+)$/.exec(s);
  if (!m) throw new ParseError(line, `bad window "${s}" (want A..B in ms)`);
  const w = { min: Number(m[1]), max: Number(m[2]) };
  if (w.min > w.max) throw new ParseError(line, 'window min > max');
  return w;
}

/**
 * Parse one step line (after loop-variable substitution).
 * @param {string} text @param {number} line
 * @returns {StepBody}
 */
function parseStep(text, line) {
  let m;
  if ((m = /^(c\d+)> (.*)$/s.exec(text))) {
    const data = m[2] ?? '';
    if (/[ \t]$/.test(data)) throw new ParseError(line, 'trailing whitespace in data; write \\x20 for a final space');
    return { op: 'send', conn: m[1] ?? '', data: parseSendData(data, line) };
  }
  if ((m = /^(c\d+)< \{none\} for (\d+)$/.exec(text))) return { op: 'none', conn: m[1] ?? '', ms: Number(m[2]) };
  if ((m = /^(c\d+)< \{eof\}(?: within (\S+))?$/.exec(text))) {
    return { op: 'eof', conn: m[1] ?? '', window: parseWindow(m[2] ?? '', line) };
  }
  if ((m = /^(c\d+)< (.*?)(?: within (\d+\.\.\d+))?$/s.exec(text))) {
    const pat = m[2] ?? '';
    if (/[ \t]$/.test(pat)) throw new ParseError(line, 'trailing whitespace in expectation; write \\x20');
    if (pat === '') throw new ParseError(line, 'empty expectation');
    return { op: 'expect', conn: m[1] ?? '', segs: parsePattern(pat, line), text: pat, window: parseWindow(m[3] ?? '', line) };
  }
  if ((m = /^(c\d+) (open|close|halfclose)$/.exec(text))) {
    return { op: /** @type {'open'|'close'|'halfclose'} */ (m[2]), conn: m[1] ?? '' };
  }
  if ((m = /^wait (\d+)$/.exec(text))) return { op: 'wait', ms: Number(m[1]) };
  if (text === 'mark') return { op: 'mark' };
  if ((m = /^signal (USR1|USR2|TERM|INT|HUP|KILL)$/.exec(text))) {
    return { op: 'signal', sig: /** @type {NodeJS.Signals} */ (`SIG${m[1]}`) };
  }
  if (text === 'restart' || text === 'stop' || text === 'kill9' || text === 'start' || text === 'stalesock') {
    return { op: text };
  }
  if ((m = /^file (\S+) (exists|absent|size (\d+))$/.exec(text))) {
    const check = m[2] === 'exists' || m[2] === 'absent' ? m[2] : 'size';
    return { op: 'file', path: m[1] ?? '', check, size: Number(m[3] ?? -1) };
  }
  throw new ParseError(line, `cannot parse step "${text}"`);
}

/**
 * Expand `for VAR in A..B` / `end` loops, substituting ${VAR}.
 * @param {Array<{text: string, line: number}>} lines
 * @returns {Array<{text: string, line: number}>}
 */
function expandLoops(lines) {
  /** @type {Array<{text: string, line: number}>} */
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const l = /** @type {{text: string, line: number}} */ (lines[i]);
    const m = /^for ([a-z]\w*) in (\d+)\.\.(\d+)$/.exec(l.text);
    if (!m) {
      if (l.text === 'end') throw new ParseError(l.line, '"end" without "for"');
      out.push(l);
      continue;
    }
    let depth = 1;
    let j = i + 1;
    for (; j < lines.length; j++) {
      const t = lines[j]?.text ?? '';
      if (/^for /.test(t)) depth++;
      else if (t === 'end' && --depth === 0) break;
    }
    if (j >= lines.length) throw new ParseError(l.line, '"for" without "end"');
    const body = expandLoops(lines.slice(i + 1, j));
    const from = Number(m[2]);
    const to = Number(m[3]);
    const re = new RegExp(`\\$\\{${m[1]}\\}`, 'g');
    for (let v = from; v <= to; v++) {
      for (const b of body) out.push({ text: b.text.replace(re, String(v)), line: b.line });
    }
    i = j;
  }
  return out;
}

/**
 * @param {string} file relative file name (for messages)
 * @param {string} source file contents
 * @returns {Scenario}
 */
export function parseScenario(file, source) {
  const raw = source.split('\n');
  if (raw.length && raw[raw.length - 1] === '') raw.pop();
  const first = raw[0] ?? '';
  const hm = /^# ([A-Za-z0-9_]+): (.+)$/.exec(first);
  if (!hm) throw new ParseError(1, 'first line must be "# name: description"');
  const base = file.replace(/^.*\//, '').replace(/\.txt$/, '');
  if (hm[1] !== base) throw new ParseError(1, `scenario name "${hm[1]}" does not match file name "${base}"`);
  /** @type {Scenario} */
  const sc = {
    file, name: hm[1] ?? '', description: hm[2] ?? '', ref: null, args: [], tags: [], compat: null,
    timeoutMs: 15000, manualStart: false, steps: [],
  };
  /** @type {Array<{text: string, line: number}>} */
  const body = [];
  let inSteps = false;
  for (let i = 1; i < raw.length; i++) {
    const line = i + 1;
    const text = (raw[i] ?? '').replace(/\r$/, '');
    if (text.trim() === '') continue;
    if (text.startsWith('#')) {
      const rm = /^# ref: (cttest_\w+)$/.exec(text);
      if (rm && !inSteps) sc.ref = rm[1] ?? null;
      continue;
    }
    let m;
    if (!inSteps && (m = /^(args|tags|compat|timeout|start): ?(.*)$/.exec(text))) {
      const val = (m[2] ?? '').trim();
      if (m[1] === 'args') sc.args.push(...val.split(/\s+/).filter(Boolean));
      else if (m[1] === 'tags') sc.tags.push(...val.split(/[\s,]+/).filter(Boolean));
      else if (m[1] === 'compat') sc.compat = val;
      else if (m[1] === 'timeout') {
        if (!/^\d+$/.test(val)) throw new ParseError(line, 'timeout wants milliseconds');
        sc.timeoutMs = Number(val);
      } else if (m[1] === 'start') {
        if (val !== 'manual' && val !== 'auto') throw new ParseError(line, 'start: manual|auto');
        sc.manualStart = val === 'manual';
      }
      continue;
    }
    if (text.startsWith('+ ')) {
      const prev = body[body.length - 1];
      if (!prev) throw new ParseError(line, '"+ " continuation line without a step before it');
      prev.text += text.slice(2);
      continue;
    }
    inSteps = true;
    body.push({ text, line });
  }
  for (const { text, line } of expandLoops(body)) {
    const fm = /^(ref|tsb):(.*)$/s.exec(text);
    const flavor = fm ? /** @type {'ref'|'tsb'} */ (fm[1]) : null;
    const stepText = fm ? fm[2] ?? '' : text;
    sc.steps.push({ ...parseStep(stepText, line), line, flavor });
  }
  if (sc.steps.some((s) => s.flavor) && !sc.compat) {
    throw new ParseError(1, 'scenario has ref:/tsb: steps but no "compat:" header');
  }
  if (sc.steps.length === 0) throw new ParseError(1, 'scenario has no steps');
  return sc;
}
