import { InvalidArgumentError } from '../core/errors.js';
import { LOCATION_PATTERN } from '../router/locations.js';
import { SeededRandom, ZipfSampler } from './random.js';
import type { TraceEvent } from './trace.js';

/** The workload shapes `cloudmux cost generate` knows (see docs/cost.md for each). */
export const TRACE_SHAPES = ['zipf', 'diurnal', 'regional', 'worm', 'hot-then-cold', 'sessions'] as const;
export type TraceShape = (typeof TRACE_SHAPES)[number];

export interface GeneratorOptions {
  shape: TraceShape;
  /** Seed of the PRNG: the same options give the same trace, byte for byte. */
  seed: number;
  /** Lines in the trace, puts included. */
  requests: number;
  /** Distinct objects. */
  objects: number;
  /** Simulated days the trace spans. */
  days: number;
  /** Reader and writer locations, `cloud:region`. */
  locations: string[];
  /** Zipf exponent of object popularity (default 1.1). */
  zipf?: number;
  /** Fraction of the requests after the first write of each object that are reads (default 0.95; zipf, diurnal, regional). */
  readRatio?: number;
  /** Median object size in bytes (default 1 MiB); sizes are log-normal with sigma 1, in [1 KiB, 1 GiB]. */
  medianSize?: number;
  /** Fraction of an object's reads from its home location (default 0.8 for regional, 0.6 for worm and hot-then-cold). */
  locality?: number;
  /** hot-then-cold: mean age of a read, in hours (default 6). */
  hotHours?: number;
}

const DAY = 86_400;

/**
 * Generates a trace of the given shape, in time order. Every object is put before it is read.
 * Shapes:
 * - `zipf` — a fixed set of objects written in the first hour; then reads (and overwrites, 1 −
 *   readRatio) of objects drawn by Zipf popularity from locations drawn uniformly.
 * - `diurnal` — as zipf, but each location's request rate follows a day cycle peaking at its own
 *   local afternoon (locations spread evenly across time zones), from 0.2× to 1.8× the mean.
 * - `regional` — as zipf, but each object has a home location that issues `locality` of its reads;
 *   the rest come from the other locations uniformly.
 * - `worm` — write once, read many: objects are written at a steady rate over the trace, never
 *   changed; each is read by Zipf popularity at uniform times after its creation, mostly at home
 *   and otherwise at a random subset of the other locations.
 * - `hot-then-cold` — objects written at a steady rate; each one's reads come soon after its write
 *   (exponential ages, mean `hotHours`) and then stop, as with news, builds or logs.
 * - `sessions` — a fixed population written in the first hour; reads come in sessions: a session
 *   picks an object by Zipf popularity (the ranking is reshuffled every week: popularity drifts)
 *   and a location (the object's home half the time, else any), and reads it a geometric number of
 *   times (mean 5) a few minutes apart (exponential, mean 10 minutes). Gaps are bimodal: minutes
 *   within a session, days between sessions. Overwrites (1 − readRatio of the sessions) come
 *   from the home location.
 */
export function* generateTrace(o: GeneratorOptions): Generator<TraceEvent> {
  validate(o);
  const rng = new SeededRandom(o.seed);
  const sizes = Array.from({ length: o.objects }, () => Math.round(Math.min(2 ** 30, Math.max(1024, rng.logNormal(o.medianSize ?? 2 ** 20, 1)))));
  const homes = Array.from({ length: o.objects }, () => o.locations[rng.int(o.locations.length)]!);
  const key = (i: number): string => `${o.shape}/${String(i).padStart(7, '0')}`;
  if (o.shape === 'worm' || o.shape === 'hot-then-cold') yield* bornOverTime(o, rng, sizes, homes, key);
  else if (o.shape === 'sessions') yield* sessions(o, rng, sizes, homes, key);
  else yield* steadyPopulation(o, rng, sizes, homes, key);
}

function validate(o: GeneratorOptions): void {
  const bad = (m: string): never => {
    throw new InvalidArgumentError(`cost generate: ${m}`);
  };
  if (!TRACE_SHAPES.includes(o.shape)) bad(`unknown shape "${o.shape}"; expected one of: ${TRACE_SHAPES.join(', ')}`);
  if (!Number.isSafeInteger(o.seed)) bad(`seed must be an integer, got ${o.seed}`);
  if (!Number.isSafeInteger(o.objects) || o.objects < 1) bad(`objects must be a whole number ≥ 1, got ${o.objects}`);
  if (!Number.isSafeInteger(o.requests) || o.requests < o.objects) bad(`requests must be a whole number ≥ objects (${o.objects}): every object is written once; got ${o.requests}`);
  if (!(o.days > 0) || !Number.isFinite(o.days)) bad(`days must be > 0, got ${o.days}`);
  if (o.locations.length === 0) bad('at least one location is needed');
  for (const l of o.locations) if (!LOCATION_PATTERN.test(l)) bad(`location must be cloud:region (e.g. aws:us-east-1), got ${JSON.stringify(l)}`);
  const frac = (name: string, v: number | undefined): void => {
    if (v !== undefined && !(v >= 0 && v <= 1)) bad(`${name} must be between 0 and 1, got ${v}`);
  };
  frac('readRatio', o.readRatio);
  frac('locality', o.locality);
  if (o.zipf !== undefined && !(o.zipf > 0)) bad(`zipf must be > 0, got ${o.zipf}`);
  if (o.medianSize !== undefined && !(o.medianSize >= 1)) bad(`medianSize must be ≥ 1 byte, got ${o.medianSize}`);
  if (o.hotHours !== undefined && !(o.hotHours > 0)) bad(`hotHours must be > 0, got ${o.hotHours}`);
}

/** zipf, diurnal, regional: all objects written in the first hour, then a Poisson stream of requests. */
function* steadyPopulation(o: GeneratorOptions, rng: SeededRandom, sizes: number[], homes: string[], key: (i: number) => string): Generator<TraceEvent> {
  const putPhase = Math.min(3600, (o.days * DAY) / 10);
  let t = 0;
  for (let i = 0; i < o.objects; i++) {
    t += rng.exponential(putPhase / o.objects);
    yield { time: Math.min(t, putPhase), op: 'put', key: key(i), size: sizes[i]!, location: homes[i]! };
  }
  const rest = o.requests - o.objects;
  const span = o.days * DAY - putPhase;
  const zipf = new ZipfSampler(o.objects, o.zipf ?? 1.1);
  // Popularity rank → object, shuffled so that key order says nothing about popularity.
  const byRank = shuffle(Array.from({ length: o.objects }, (_, i) => i), rng);
  const readRatio = o.readRatio ?? 0.95;
  const locality = o.locality ?? 0.8;
  const n = o.locations.length;
  // Diurnal: location l peaks at hour 15 of its own day; offsets spread the locations across the globe.
  const rate = (l: number, at: number): number => 1 + 0.8 * Math.sin(2 * Math.PI * (at / DAY - l / n) - Math.PI / 4);
  let now = putPhase;
  for (let r = 0; r < rest; r++) {
    now += rng.exponential(span / rest);
    const time = Math.min(now, o.days * DAY);
    const obj = byRank[zipf.sample(rng)]!;
    let location: string;
    if (o.shape === 'regional') {
      location = n === 1 || rng.next() < locality ? homes[obj]! : otherThan(homes[obj]!, o.locations, rng);
    } else if (o.shape === 'diurnal') {
      location = rng.weighted(o.locations, o.locations.map((_, l) => rate(l, time)));
    } else location = o.locations[rng.int(n)]!;
    if (rng.next() < readRatio) yield { time, op: 'get', key: key(obj), size: sizes[obj]!, location };
    else yield { time, op: 'put', key: key(obj), size: sizes[obj]!, location: homes[obj]! };
  }
}

/** worm, hot-then-cold: objects born at a steady rate; reads after birth. Built whole, then sorted by time. */
function* bornOverTime(o: GeneratorOptions, rng: SeededRandom, sizes: number[], homes: string[], key: (i: number) => string): Generator<TraceEvent> {
  const end = o.days * DAY;
  // Objects are born over the first 90% of the trace so that the last ones still get read.
  const born = Array.from({ length: o.objects }, (_, i) => ((i + rng.next()) / o.objects) * end * 0.9);
  const locality = o.locality ?? 0.6;
  const readers = homes.map((home) => [home, ...o.locations.filter((l) => l !== home && rng.next() < 0.3)]);
  const zipf = new ZipfSampler(o.objects, o.zipf ?? 1.1);
  const byRank = shuffle(Array.from({ length: o.objects }, (_, i) => i), rng);
  const reads = o.requests - o.objects;
  const times = new Float64Array(o.requests);
  const objs = new Int32Array(o.requests);
  const locs = new Int32Array(o.requests);
  const ops = new Uint8Array(o.requests); // 0 put, 1 get
  for (let i = 0; i < o.objects; i++) {
    times[i] = born[i]!;
    objs[i] = i;
    locs[i] = o.locations.indexOf(homes[i]!);
  }
  const hot = (o.hotHours ?? 6) * 3600;
  for (let r = 0; r < reads; r++) {
    const j = o.objects + r;
    const obj = byRank[zipf.sample(rng)]!;
    const b = born[obj]!;
    let time: number;
    if (o.shape === 'hot-then-cold') {
      time = b + rng.exponential(hot);
      for (let tries = 0; time > end && tries < 8; tries++) time = b + rng.exponential(hot);
      if (time > end) time = b + rng.next() * (end - b);
    } else time = b + rng.next() * (end - b);
    const set = readers[obj]!;
    const loc = set.length === 1 || rng.next() < locality ? set[0]! : set[1 + rng.int(set.length - 1)]!;
    times[j] = time;
    objs[j] = obj;
    locs[j] = o.locations.indexOf(loc);
    ops[j] = 1;
  }
  const order = Array.from({ length: o.requests }, (_, i) => i).sort((a, b) => times[a]! - times[b]! || ops[a]! - ops[b]! || a - b);
  for (const i of order) {
    const obj = objs[i]!;
    yield { time: times[i]!, op: ops[i] === 0 ? 'put' : 'get', key: key(obj), size: sizes[obj]!, location: o.locations[locs[i]!]! };
  }
}

/** sessions: bursts of reads of one object at one location; popularity reshuffled weekly. Built whole, then sorted by time. */
function* sessions(o: GeneratorOptions, rng: SeededRandom, sizes: number[], homes: string[], key: (i: number) => string): Generator<TraceEvent> {
  const end = o.days * DAY;
  const putPhase = Math.min(3600, end / 10);
  const times = new Float64Array(o.requests);
  const objs = new Int32Array(o.requests);
  const locs = new Int32Array(o.requests);
  const ops = new Uint8Array(o.requests); // 0 put, 1 get
  for (let i = 0; i < o.objects; i++) {
    times[i] = ((i + rng.next()) / o.objects) * putPhase;
    objs[i] = i;
    locs[i] = o.locations.indexOf(homes[i]!);
  }
  const zipf = new ZipfSampler(o.objects, o.zipf ?? 1.1);
  const readRatio = o.readRatio ?? 0.95;
  const weeks = Math.ceil(end / (7 * DAY));
  const rankings = Array.from({ length: weeks }, () => shuffle(Array.from({ length: o.objects }, (_, i) => i), rng));
  let j = o.objects;
  while (j < o.requests) {
    const start = putPhase + rng.next() * (end - putPhase);
    const obj = rankings[Math.min(weeks - 1, Math.floor(start / (7 * DAY)))]![zipf.sample(rng)]!;
    if (rng.next() >= readRatio) {
      times[j] = start;
      objs[j] = obj;
      locs[j] = o.locations.indexOf(homes[obj]!);
      ops[j++] = 0;
      continue;
    }
    const loc = rng.next() < 0.5 ? o.locations.indexOf(homes[obj]!) : rng.int(o.locations.length);
    let t = start;
    do {
      times[j] = Math.min(t, end);
      objs[j] = obj;
      locs[j] = loc;
      ops[j++] = 1;
      t += rng.exponential(600);
    } while (j < o.requests && rng.next() < 0.8);
  }
  const order = Array.from({ length: o.requests }, (_, i) => i).sort((a, b) => times[a]! - times[b]! || ops[a]! - ops[b]! || a - b);
  for (const i of order) {
    const obj = objs[i]!;
    yield { time: times[i]!, op: ops[i] === 0 ? 'put' : 'get', key: key(obj), size: sizes[obj]!, location: o.locations[locs[i]!]! };
  }
}

function otherThan(home: string, all: string[], rng: SeededRandom): string {
  const others = all.filter((l) => l !== home);
  return others[rng.int(others.length)]!;
}

function shuffle<T>(a: T[], rng: SeededRandom): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
