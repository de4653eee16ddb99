#!/usr/bin/env node
import { describeError, EXIT } from './errors.js';
import { main } from './main.js';

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`cloudmux: ${describeError(e)}\n`);
    process.exitCode = EXIT.failed;
  },
);
