/**
 * Child process for the resumable-upload kill test: migrates an fs directory into Azure (Azurite)
 * with a bandwidth limit, printing `PART <n>` as each part is accepted, until the parent kills it
 * with SIGKILL. Usage: resumable-kill-child.ts <journal> <srcDir> <container> <prefix> <bytesPerSecond>
 * (the connection string comes from AZURE_STORAGE_CONNECTION_STRING).
 */
import { createAzureStore } from '../../providers/azure/index.js';
import { FsStore } from '../../providers/fs/store.js';
import { migrate } from '../../src/replication/migrate.js';

const [journal, srcDir, container, prefix, rate] = process.argv.slice(2);
const src = new FsStore({ root: srcDir! });
const dst = createAzureStore({ connectionString: process.env.AZURE_STORAGE_CONNECTION_STRING, container, prefix, blockSize: 5 * 1024 * 1024 });
const summary = await migrate(src, dst, {
  journal: journal!, names: { src: 'fs', dst: 'az' }, partConcurrency: 2, bytesPerSecond: Number(rate),
  onEvent: (e) => {
    if (e.type === 'part') process.stdout.write(`PART ${e.partNumber}\n`);
  },
});
process.stdout.write(`DONE ${JSON.stringify(summary)}\n`);
