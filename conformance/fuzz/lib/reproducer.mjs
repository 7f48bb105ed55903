// @ts-check
/**
 * A case and the reference's replies to it as a conformance scenario
 * (conformance/README.md): what each connection sends, and what the
 * reference answered, with placeholders where values depend on time or
 * process. Saved under conformance/scenarios/, it runs with the normal
 * runner; tsbeanstalkd fails it until the divergence is fixed.
 */
import { escapeScenario, expectation } from './replies.mjs';

/**
 * @param {import('./generate.mjs').Case} c the (shrunk) case
 * @param {import('./lockstep.mjs').StepRecord[]} records the reference's run of it
 * @param {{name: string, note: string}} meta
 * @returns {string}
 */
export function toScenario(c, records, meta) {
  const lines = [`# ${meta.name}: ${meta.note}`];
  lines.push('# Found by conformance/fuzz (lockstep against the reference). c0 is the fuzzer\'s own');
  lines.push('# connection: it only opens, so the connection counts in stats are the same.');
  if (c.args.length) lines.push(`args: ${c.args.join(' ')}`);
  if (c.binlog) lines.push('tags: binlog');
  lines.push('c0 open');
  const opts = { binlog: c.binlog };
  /** Connections the client closed: their EOF is not the server's doing. */
  const closed = new Set();
  /** Connections whose EOF was already expected. */
  const ended = new Set();
  for (const rec of records) {
    if (rec.skipped) continue;
    const step = /** @type {import('./generate.mjs').Step} */ (c.steps[rec.step]);
    if (step.op === 'send') {
      // The fuzzer opened a new connection under this name (after a quit or a half-close).
      if (rec.reopened) lines.push(`${step.conn} close`);
      if (closed.has(step.conn) || ended.has(step.conn)) {
        closed.delete(step.conn);
        ended.delete(step.conn);
      }
      step.chunks.forEach((ch, k) => {
        if (k > 0) lines.push('wait 20');
        lines.push(`${step.conn}> ${escapeScenario(ch.toString('latin1'))}`);
      });
    } else {
      lines.push(`${step.conn} ${step.op}`);
      if (step.op === 'close') closed.add(step.conn);
    }
    for (const out of rec.outputs.ref) {
      for (const r of out.replies) lines.push(`${out.conn}< ${expectation(r, opts)}`);
      if (out.tail.length) lines.push(`${out.conn}< ${escapeScenario(out.tail.toString('latin1'))}`);
      if (out.eof && !closed.has(out.conn) && !ended.has(out.conn)) {
        lines.push(`${out.conn}< {eof}`);
        ended.add(out.conn);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}
