import { NotSupportedError, throwIfAborted } from './errors.js';
import { validateKey } from './keys.js';
import { validateMetadata } from './metadata.js';
import { validateRange } from './range.js';
import type { Capabilities, CopyOptions, DeleteOptions, GetOptions, PutOptions } from './types.js';

/** Everything a driver must check before a put touches the provider. */
export function checkPut(provider: string, caps: Capabilities, key: string, opts: PutOptions): void {
  validateKey(key, provider);
  validateMetadata(opts.metadata, provider, key);
  if ((opts.ifNoneMatch !== undefined || opts.ifMatch !== undefined) && !caps.conditionalPut) {
    throw new NotSupportedError(`${provider} does not support conditional puts (capabilities.conditionalPut is false)`, { provider, key });
  }
  throwIfAborted(opts.signal, { provider, key });
}

/** Everything a driver must check before a delete touches the provider. */
export function checkDelete(provider: string, caps: Capabilities, key: string, opts: DeleteOptions): void {
  validateKey(key, provider);
  if (opts.ifMatch !== undefined && !caps.conditionalDelete) {
    throw new NotSupportedError(`${provider} does not support conditional deletes (capabilities.conditionalDelete is false)`, { provider, key });
  }
  throwIfAborted(opts.signal, { provider, key });
}

export function checkGet(provider: string, key: string, opts: GetOptions): void {
  validateKey(key, provider);
  validateRange(opts.range, provider, key);
  throwIfAborted(opts.signal, { provider, key });
}

export function checkCopy(provider: string, caps: Capabilities, src: string, dst: string, opts: CopyOptions): void {
  validateKey(src, provider);
  validateKey(dst, provider);
  validateMetadata(opts.metadata, provider, dst);
  if (opts.ifNoneMatch !== undefined && !caps.conditionalPut) {
    throw new NotSupportedError(`${provider} does not support conditional copies (capabilities.conditionalPut is false)`, { provider, key: dst });
  }
  throwIfAborted(opts.signal, { provider, key: dst });
}
