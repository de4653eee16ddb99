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

// The AWS SDK warns on Node < 22 (8 lines on stderr, every S3 command) that its releases after
// January 2027 will need Node 22; cloudmux pins one that supports Node 20. That is news for whoever
// upgrades the dependency, not for a CLI user. Set before any SDK loads; a user's own setting wins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

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
