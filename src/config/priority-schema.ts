import { z } from 'zod';
import { BYTE_SIZE_EXAMPLES, parseByteSize } from '../core/byte-size.js';
import { PRIORITY_CLASSES } from '../core/priority.js';

/** A size in bytes: a number, or `512K`, `100M`, `1G` (binary multiples). */
export const sizeSchema = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const n = parseByteSize(v);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected ${BYTE_SIZE_EXAMPLES}` });
    return z.NEVER;
  }
  return n;
});

/** One priority rule: every condition given must hold; the first matching rule wins. */
export const priorityRuleSchema = z.strictObject({
  class: z.enum(PRIORITY_CLASSES),
  /** Key globs (picomatch, `**` crosses `/`); one must match. */
  match: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  minSize: sizeSchema.optional(),
  maxSize: sizeSchema.optional(),
  /** Metadata that must be present with these values (outbox only: migration listings carry no metadata). */
  metadata: z.record(z.string(), z.string()).optional(),
});

export const prioritySchema = z.strictObject({
  rules: z.array(priorityRuleSchema).default([]),
  /** Class of what no rule matches. */
  default: z.enum(PRIORITY_CLASSES).default('normal'),
  /** Claim shares (default critical 16, normal 4, bulk 1); each ≥ 1 so no class starves. */
  weights: z.strictObject({
    critical: z.number().int().min(1).optional(),
    normal: z.number().int().min(1).optional(),
    bulk: z.number().int().min(1).optional(),
  }).optional(),
});
