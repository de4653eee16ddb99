import { describe, expect, it } from 'vitest';
import { CloudmuxError } from '../../src/core/errors.js';
import { generateTrace, TRACE_SHAPES, type GeneratorOptions } from '../../src/cost/generators.js';
import { formatTraceEvent, parseTrace, TRACE_HEADER, TraceFormatError, type TraceEvent } from '../../src/cost/trace.js';

async function parseAll(text: string | string[]): Promise<TraceEvent[]> {
  const chunks = typeof text === 'string' ? [text] : text;
  const out: TraceEvent[] = [];
  for await (const e of parseTrace((async function* () {
    for (const c of chunks) yield new TextEncoder().encode(c);
  })())) out.push(e);
  return out;
}

async function parseError(text: string): Promise<TraceFormatError> {
  try {
    await parseAll(text);
  } catch (e) {
    expect(e).toBeInstanceOf(TraceFormatError);
    expect((e as CloudmuxError).code).toBe('InvalidArgument');
    return e as TraceFormatError;
  }
  throw new Error('expected a TraceFormatError');
}

describe('trace format', () => {
  it('parses a header, CRLF lines, quoted keys and chunks split anywhere', async () => {
    const text = `${TRACE_HEADER}\r\n0,put,a/1,100,aws:us-east-1\r\n1.5,get,"b,""x""",100,gcp:europe-west1\n2,delete,a/1,,aws:us-east-1`;
    const whole = await parseAll(text);
    expect(whole).toEqual([
      { time: 0, op: 'put', key: 'a/1', size: 100, location: 'aws:us-east-1' },
      { time: 1.5, op: 'get', key: 'b,"x"', size: 100, location: 'gcp:europe-west1' },
      { time: 2, op: 'delete', key: 'a/1', size: 0, location: 'aws:us-east-1' },
    ]);
    const split = await parseAll(Array.from(text, (c) => c));
    expect(split).toEqual(whole);
  });

  it('round-trips what it formats', async () => {
    const events: TraceEvent[] = [
      { time: 0.001, op: 'put', key: ' spaced ', size: 1, location: 'azure:eastus' },
      { time: 3, op: 'get', key: 'quote"comma,', size: 0, location: 'aws:eu-west-1' },
    ];
    expect(await parseAll([TRACE_HEADER, ...events.map(formatTraceEvent)].join('\n'))).toEqual(events);
  });

  it.each([
    ['0,put,k,1', 2, /expected 5 fields/],
    ['x,put,k,1,aws:us-east-1', 2, /time must be/],
    ['-1,put,k,1,aws:us-east-1', 2, /time must be/],
    ['0,copy,k,1,aws:us-east-1', 2, /op must be get, put or delete/],
    ['0,put,,1,aws:us-east-1', 2, /key is empty/],
    ['0,put,k,1.5,aws:us-east-1', 2, /size must be a whole number/],
    ['0,get,k,,aws:us-east-1', 2, /size is empty/],
    ['0,put,k,1,us-east-1', 2, /location must be cloud:region/],
    ['0,put,"k,1,aws:us-east-1', 2, /unterminated quoted field/],
    ['0,put,k"x,1,aws:us-east-1', 2, /quote inside an unquoted field/],
  ])('rejects %j with a typed error naming line %i', async (line, lineNo, message) => {
    const e = await parseError(`${TRACE_HEADER}\n${line}\n`);
    expect(e.line).toBe(lineNo);
    expect(e.message).toMatch(message);
    expect(e.message).toMatch(new RegExp(`^trace line ${lineNo}: `));
  });

  it('rejects time going backwards, naming the line', async () => {
    const e = await parseError('5,put,k,1,aws:us-east-1\n4,get,k,1,aws:us-east-1\n');
    expect(e.line).toBe(2);
    expect(e.message).toMatch(/before the previous line/);
  });

  it('rejects bytes that are not UTF-8', async () => {
    const gen = parseTrace((async function* () {
      yield new TextEncoder().encode('0,put,k,1,aws:us-east-1\n0,put,');
      yield new Uint8Array([0xff, 0xfe]);
    })());
    await expect((async () => { for await (const _ of gen) { /* drain */ } })()).rejects.toThrow(/line 2: not valid UTF-8/);
  });
});

describe('trace generators', () => {
  const base = { seed: 7, requests: 3000, objects: 200, days: 3, locations: ['aws:us-east-1', 'gcp:europe-west1', 'azure:eastus'] };

  it.each(TRACE_SHAPES)('%s: replays byte for byte from its seed, in time order, every object put before it is read', (shape) => {
    const opts: GeneratorOptions = { ...base, shape };
    const a = [...generateTrace(opts)].map(formatTraceEvent);
    const b = [...generateTrace(opts)].map(formatTraceEvent);
    expect(a).toEqual(b);
    expect(a).toHaveLength(3000);
    expect([...generateTrace({ ...opts, seed: 8 })].map(formatTraceEvent)).not.toEqual(a);
    const seen = new Set<string>();
    let last = 0;
    for (const e of generateTrace(opts)) {
      expect(e.time).toBeGreaterThanOrEqual(last);
      last = e.time;
      if (e.op === 'put') seen.add(e.key);
      else expect(seen.has(e.key), `${e.key} read before it was written`).toBe(true);
      expect(base.locations).toContain(e.location);
      expect(e.time).toBeLessThanOrEqual(3 * 86_400);
    }
    expect(seen.size).toBe(200);
  });

  it('regional: most reads of an object come from its home', () => {
    const home = new Map<string, string>();
    let local = 0;
    let reads = 0;
    for (const e of generateTrace({ ...base, shape: 'regional', locality: 0.9 })) {
      if (!home.has(e.key)) home.set(e.key, e.location);
      else if (e.op === 'get') {
        reads++;
        if (home.get(e.key) === e.location) local++;
      }
    }
    expect(local / reads).toBeGreaterThan(0.85);
  });

  it.each([
    [{ shape: 'pareto' }, /unknown shape/],
    [{ requests: 10 }, /requests must be a whole number ≥ objects/],
    [{ days: 0 }, /days must be > 0/],
    [{ locations: ['nowhere'] }, /location must be cloud:region/],
    [{ readRatio: 2 }, /readRatio must be between 0 and 1/],
  ])('rejects bad options %j with InvalidArgument', (bad, message) => {
    expect(() => [...generateTrace({ ...base, shape: 'zipf', ...bad } as GeneratorOptions)]).toThrow(message);
  });
});
