// Bounded tool output (DESIGN rule 10). Pure, dependency-free: it runs inside the sandbox (Node 22) and is
// unit-tested on the host (Node 20).

/** Share of the kept characters that comes from the head; the rest comes from the tail. */
export const HEAD_SHARE = 0.4;

function marker(omitted, outputPath) {
  const where = outputPath ? `; full output in ${outputPath}` : '';
  return `[... ${omitted} characters omitted${where} ...]`;
}

/**
 * Keep `text` within `cap` characters. Under the cap it is returned unchanged. Over it, the result is the head
 * (about 40% of the room) and the tail (about 60%) joined by a marker line that says how many characters were
 * left out and, when `options.outputPath` is given, where the full output is. The result, marker included, is
 * never longer than `cap` (for any cap of at least 100).
 *
 * @param {string} text
 * @param {number} cap  maximum length of the returned text, in UTF-16 code units (JavaScript string length)
 * @param {{ outputPath?: string }} [options]
 * @returns {{ text: string, truncated: boolean, omitted: number }}
 */
export function truncateOutput(text, cap, options = {}) {
  const s = String(text ?? '');
  if (!Number.isFinite(cap) || cap <= 0 || s.length <= cap) return { text: s, truncated: false, omitted: 0 };
  cap = Math.max(100, Math.floor(cap));
  if (s.length <= cap) return { text: s, truncated: false, omitted: 0 };
  // The marker's length depends on the count it prints; size it with the largest count it could print.
  const room = Math.max(0, cap - marker(s.length, options.outputPath).length - 2);
  const headRoom = Math.floor(room * HEAD_SHARE);
  const tailRoom = room - headRoom;
  let headLen = headRoom;
  let tailStart = s.length - tailRoom;
  // Prefer whole lines when a line break is close to the cut (within a quarter of the kept part).
  const headBreak = s.lastIndexOf('\n', headLen - 1);
  if (headBreak >= 0 && headBreak + 1 >= headRoom * 0.75) headLen = headBreak + 1;
  const tailBreak = s.indexOf('\n', tailStart);
  if (tailBreak >= 0 && tailBreak + 1 - tailStart <= tailRoom * 0.25) tailStart = tailBreak + 1;
  // Never split a surrogate pair.
  if (headLen > 0 && isHighSurrogate(s.charCodeAt(headLen - 1))) headLen--;
  if (tailStart < s.length && isLowSurrogate(s.charCodeAt(tailStart))) tailStart++;
  const head = s.slice(0, headLen);
  const tail = s.slice(tailStart);
  const omitted = s.length - head.length - tail.length;
  const sep = head.endsWith('\n') || head === '' ? '' : '\n';
  return { text: `${head}${sep}${marker(omitted, options.outputPath)}\n${tail}`, truncated: true, omitted };
}

function isHighSurrogate(c) {
  return c >= 0xd800 && c <= 0xdbff;
}
function isLowSurrogate(c) {
  return c >= 0xdc00 && c <= 0xdfff;
}

/**
 * Bounds the output a command wrote to the file at `filePath` without reading all of it: a file of up to four
 * times the cap is read whole and cut by {@link truncateOutput}; a larger one contributes only its first and last
 * bytes. The marker names `filePath`, which keeps the full output.
 *
 * @param {string} filePath
 * @param {number} cap
 * @param {{ readFileSync: Function, openSync: Function, readSync: Function, closeSync: Function, statSync: Function }} fs
 * @returns {{ text: string, truncated: boolean, omitted: number }}
 */
export function truncateFile(filePath, cap, fs) {
  const size = fs.statSync(filePath).size;
  if (size <= cap * 4) return truncateOutput(fs.readFileSync(filePath, 'utf8'), cap, { outputPath: filePath });
  const headBytes = Math.floor(cap * HEAD_SHARE);
  const tailBytes = cap * 2; // tail bytes read; truncateOutput keeps what fits
  const fd = fs.openSync(filePath, 'r');
  try {
    const head = Buffer.alloc(headBytes);
    fs.readSync(fd, head, 0, headBytes, 0);
    const tail = Buffer.alloc(tailBytes);
    fs.readSync(fd, tail, 0, tailBytes, size - tailBytes);
    // Cut at line breaks near the edges so no line is shown half, then let truncateOutput place the marker.
    let h = head.toString('utf8');
    const hb = h.lastIndexOf('\n');
    if (hb >= h.length * 0.75) h = h.slice(0, hb + 1);
    let t = tail.toString('utf8');
    const tb = t.indexOf('\n');
    if (tb >= 0 && tb < t.length * 0.25) t = t.slice(tb + 1);
    const note = (n) => `[... ${n} bytes omitted; full output in ${filePath} ...]`;
    const room = Math.max(0, cap - h.length - note(size).length - 2);
    t = t.slice(Math.max(0, t.length - room));
    const nl = t.indexOf('\n');
    if (nl >= 0 && nl < room * 0.25) t = t.slice(nl + 1);
    const omittedBytes = size - Buffer.byteLength(h) - Buffer.byteLength(t);
    return { text: `${h}${h.endsWith('\n') ? '' : '\n'}${note(omittedBytes)}\n${t}`, truncated: true, omitted: omittedBytes };
  } finally {
    fs.closeSync(fd);
  }
}
