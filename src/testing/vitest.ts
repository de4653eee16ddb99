/**
 * vitest, loaded so that its absence is a clear message rather than a bare ERR_MODULE_NOT_FOUND:
 * it is an optional peer dependency (only `cloudmux/testing` needs it, and only a test run imports that).
 */
type Vitest = typeof import('vitest');

async function load(): Promise<Vitest> {
  try {
    return await import('vitest');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if ((err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') && /['"]vitest['"]/.test(err.message)) {
      throw new Error(
        "cloudmux/testing registers its conformance cases with vitest, which is not installed. It is an optional peer dependency of cloudmux: add it to your project's devDependencies (npm install --save-dev vitest) and run your driver's tests with vitest.",
        { cause: e },
      );
    }
    throw e;
  }
}

const vitest = await load();
export const { afterAll, afterEach, beforeAll, describe, expect, it } = vitest;
