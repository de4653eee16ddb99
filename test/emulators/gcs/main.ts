import { startGcsTestServer } from './server.js';

/**
 * Runs the GCS test server as its own process (benchmarks use this so the server's memory is not
 * counted in theirs): `node --import tsx test/emulators/gcs/main.ts [--port N] [--bucket B]…`.
 * Prints one JSON line `{"url":…,"port":…}` once listening; stops on SIGTERM/SIGINT.
 */
const args = process.argv.slice(2);
const buckets: string[] = [];
let port = 0;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') port = Number(args[++i]);
  else if (args[i] === '--bucket') buckets.push(String(args[++i]));
}
const server = await startGcsTestServer({ port, buckets });
process.stdout.write(`${JSON.stringify({ url: server.url, port: server.port })}\n`);
const stop = (): void => {
  void server.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
