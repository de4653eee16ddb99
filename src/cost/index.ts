export { AdaptiveTtl, type AdaptiveTtlOptions, type TtlPricing } from './adaptive-ttl.js';
export { generateTrace, TRACE_SHAPES, type GeneratorOptions, type TraceShape } from './generators.js';
export { CostLedger, type CostBreakdown, type PolicyCounters } from './ledger.js';
export { optimalSchedule, type Schedule, type ScheduleInput } from './optimum.js';
export { simulate, POLICY_NAMES, type PolicyName, type PolicyResult, type SimulationOptions, type SimulationReport } from './simulator.js';
export { formatTraceEvent, parseLine, parseTrace, TRACE_HEADER, TraceFormatError, type TraceEvent } from './trace.js';
export { SimWorld, type SimEvent, type SimProvider, type SimWorldOptions } from './world.js';
export { SeededRandom, ZipfSampler } from './random.js';
