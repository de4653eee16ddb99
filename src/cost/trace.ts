import { InvalidArgumentError } from '../core/errors.js';
import { LOCATION_PATTERN } from '../router/locations.js';

/** One request of a workload trace. */
export interface TraceEvent {
  /** Seconds since the trace began (non-decreasing along the trace). */
  time: number;
  op: 'get' | 'put' | 'delete';
  key: string;
  /** Bytes written (put) or read (get); 0 for deletes. */
  size: number;
  /** Where the request came from, `cloud:region` (`aws:us-east-1`). */
  location: string;
}

/** The header line of a trace file (optional on input, always written by {@link formatTraceEvent}'s callers). */
export const TRACE_HEADER = 'time,op,key,size,location';

/** A malformed trace line: `line` is 1-based, as editors count. */
export class TraceFormatError extends InvalidArgumentError {
  readonly line: number;

  constructor(line: number, message: string) {
    super(`trace line ${line}: ${message}`);
    this.line = line;
  }
}

const OPS = new Set(['get', 'put', 'delete']);

/** One CSV line of the trace (`"` quoting for keys with commas or quotes; `""` is a quote). */
export function formatTraceEvent(e: TraceEvent): string {
  const key = /[",\r\n]/.test(e.key) || e.key !== e.key.trim() ? `"${e.key.replaceAll('"', '""')}"` : e.key;
  return `${formatTime(e.time)},${e.op},${key},${e.size},${e.location}`;
}

/** Seconds with millisecond precision, without trailing zeros. */
function formatTime(t: number): string {
  return String(Math.round(t * 1000) / 1000);
}

/**
 * Parses a trace as it streams (bounded memory: one line at a time). Throws
 * {@link TraceFormatError} naming the line for anything malformed: a wrong field count, an unknown
 * op, a negative or fractional size, a location that is not `cloud:region`, time going backwards.
 * Keys may be double-quoted (RFC 4180); a quoted key cannot span lines.
 */
export async function* parseTrace(input: AsyncIterable<string | Uint8Array>): AsyncGenerator<TraceEvent> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let rest = '';
  let lineNo = 0;
  let last = -Infinity;
  const parse = (raw: string): TraceEvent | undefined => {
    lineNo++;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '' || (lineNo === 1 && line.trim() === TRACE_HEADER)) return undefined;
    const e = parseLine(line, lineNo);
    if (e.time < last) throw new TraceFormatError(lineNo, `time ${e.time} is before the previous line's ${last}; a trace is sorted by time`);
    last = e.time;
    return e;
  };
  for await (const chunk of input) {
    let text: string;
    try {
      text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    } catch (cause) {
      throw new TraceFormatError(lineNo + 1, `not valid UTF-8 (${String(cause)})`);
    }
    rest += text;
    let start = 0;
    for (let nl = rest.indexOf('\n', start); nl >= 0; nl = rest.indexOf('\n', start)) {
      const e = parse(rest.slice(start, nl));
      start = nl + 1;
      if (e) yield e;
    }
    rest = rest.slice(start);
  }
  try {
    rest += decoder.decode();
  } catch (cause) {
    throw new TraceFormatError(lineNo + 1, `not valid UTF-8 (${String(cause)})`);
  }
  if (rest !== '') {
    const e = parse(rest);
    if (e) yield e;
  }
}

/** Parses one line (no line terminator). */
export function parseLine(line: string, lineNo: number): TraceEvent {
  const fields = splitCsv(line, lineNo);
  if (fields.length !== 5) throw new TraceFormatError(lineNo, `expected 5 fields (${TRACE_HEADER}), got ${fields.length}`);
  const [timeText, op, key, sizeText, location] = fields as [string, string, string, string, string];
  const time = Number(timeText);
  if (timeText.trim() === '' || !Number.isFinite(time) || time < 0) throw new TraceFormatError(lineNo, `time must be a number of seconds ≥ 0, got ${JSON.stringify(timeText)}`);
  if (!OPS.has(op)) throw new TraceFormatError(lineNo, `op must be get, put or delete, got ${JSON.stringify(op)}`);
  if (key === '') throw new TraceFormatError(lineNo, 'key is empty');
  const size = sizeText === '' && op === 'delete' ? 0 : Number(sizeText);
  if (sizeText.trim() === '' && op !== 'delete') throw new TraceFormatError(lineNo, 'size is empty');
  if (!Number.isSafeInteger(size) || size < 0) throw new TraceFormatError(lineNo, `size must be a whole number of bytes ≥ 0, got ${JSON.stringify(sizeText)}`);
  if (!LOCATION_PATTERN.test(location)) throw new TraceFormatError(lineNo, `location must be cloud:region (e.g. aws:us-east-1), got ${JSON.stringify(location)}`);
  return { time, op: op as TraceEvent['op'], key, size, location };
}

function splitCsv(line: string, lineNo: number): string[] {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let value = '';
      let j = i + 1;
      for (;;) {
        const q = line.indexOf('"', j);
        if (q < 0) throw new TraceFormatError(lineNo, 'unterminated quoted field (a quoted key cannot span lines)');
        value += line.slice(j, q);
        if (line[q + 1] === '"') {
          value += '"';
          j = q + 2;
          continue;
        }
        j = q + 1;
        break;
      }
      if (j < line.length && line[j] !== ',') throw new TraceFormatError(lineNo, `unexpected text after a quoted field at column ${j + 1}`);
      out.push(value);
      i = j + 1;
    } else {
      const c = line.indexOf(',', i);
      const end = c < 0 ? line.length : c;
      const value = line.slice(i, end);
      if (value.includes('"')) throw new TraceFormatError(lineNo, `a quote inside an unquoted field at column ${i + value.indexOf('"') + 1}`);
      out.push(value);
      i = end + 1;
    }
  }
  return out;
}
