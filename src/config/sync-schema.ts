import { z } from 'zod';
import { PRIORITY_CLASSES } from '../core/priority.js';
import { ConflictPolicies } from '../sync/conflict-policies.js';
import { PRESET_NAMES } from '../sync/profiles.js';
import { priorityRuleSchema, sizeSchema } from './priority-schema.js';

const glob = z.string().min(1, 'an empty glob');

/** One device profile (SyncProfileSpec; docs/sync.md, "Profiles"). */
export const syncProfileSchema = z.strictObject({
  extends: z.enum(PRESET_NAMES).optional(),
  include: z.array(glob).optional(),
  exclude: z.array(glob).optional(),
  maxFileSize: sizeSchema.optional(),
  /** `GLOB=POLICY` or a default `POLICY`, as `--conflict` takes them. */
  conflict: z.array(z.string()).optional().superRefine((rules, ctx) => {
    rules?.forEach((rule, i) => {
      try {
        new ConflictPolicies([rule]);
      } catch (e) {
        ctx.addIssue({ code: 'custom', path: [i], message: (e as Error).message });
      }
    });
  }),
  /** List-only globs (`fetch: false`): known and listed, downloaded by `cloudmux sync fetch PATH`. */
  listOnly: z.array(glob).optional(),
  /** A metered link: only the critical class moves (`--metered` / `--no-metered` override it). */
  metered: z.boolean().optional(),
  /** Priority classes of paths (as transfers.priority; weights do not apply: a round runs all it holds). */
  priority: z.strictObject({
    rules: z.array(priorityRuleSchema.omit({ metadata: true })).optional(),
    default: z.enum(PRIORITY_CLASSES).optional(),
  }).optional(),
});

/** Settings of `cloudmux sync` (ignored by the other commands). */
export const syncConfigSchema = z.strictObject({
  /** Device profiles by name, chosen with `cloudmux sync --profile NAME`. */
  profiles: z.record(z.string().regex(/^[A-Za-z0-9_-]+$/, 'a profile name of letters, digits, _ and -'), syncProfileSchema).default({}),
});

export type SyncConfig = z.infer<typeof syncConfigSchema>;
