#!/usr/bin/env node
import * as nodeModule from 'node:module';

// Node ≥ 22.1 can keep compiled code on disk between runs (the SDKs are most of a command's start-up
// CPU); older versions lack the call. NODE_DISABLE_COMPILE_CACHE=1 turns it off, as for any Node
// program. Enabled before anything else is imported, or those modules would miss the cache.
try {
  (nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
} catch {
  // A cache that cannot be set up (read-only tmpdir) only costs speed.
}

const { describeError, EXIT } = await import('./errors.js');
const { main } = await import('./main.js');

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`cloudmux: ${describeError(e)}\n`);
    process.exitCode = EXIT.failed;
  },
);
