import type { Command } from 'commander';
import { splitObjectUrl, parseStoreUrl } from '../../registry.js';
import { openCliStore } from '../locations.js';

export function register(program: Command): void {
  program
    .command('ls')
    .description('list objects under a URL (one level; -R for all); sizes in bytes')
    .argument('<url>', 'store URL with an optional prefix: s3://bucket/dir/, gs://…, az://acct/container/…, file:///dir, memory://name')
    .option('-R, --recursive', 'list every object under the prefix, not just one level')
    .option('--json', 'one JSON object per line')
    .action(async (arg: string, opts: { recursive?: boolean; json?: boolean }) => {
      const url = parseStoreUrl(arg);
      let storeUrl: URL;
      let prefix: string;
      if (url.protocol === 'file:') {
        // A local directory is itself the store: its files are the keys.
        storeUrl = url;
        prefix = '';
      } else {
        const split = splitObjectUrl(url);
        storeUrl = split.store;
        prefix = split.key;
      }
      if (prefix && !prefix.endsWith('/') && !opts.recursive) prefix += '/';
      // Listing never writes: a local directory is opened read-only, and a missing one is NotFound (exit 1), not created.
      const store = await openCliStore(storeUrl, url.protocol === 'file:' ? { readOnly: true, createRoot: false } : undefined);
      try {
        for await (const item of store.list({ prefix, delimiter: opts.recursive ? undefined : '/' })) {
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(item.type === 'object'
              ? { key: item.key, size: item.size, etag: item.etag, lastModified: item.lastModified.toISOString() }
              : { prefix: item.prefix })}\n`);
          } else if (item.type === 'object') {
            process.stdout.write(`${String(item.size).padStart(12)} ${item.lastModified.toISOString()} ${item.key}\n`);
          } else {
            process.stdout.write(`${'DIR'.padStart(12)} ${' '.repeat(24)} ${item.prefix}\n`);
          }
        }
      } finally {
        await store.close();
      }
    });
}
