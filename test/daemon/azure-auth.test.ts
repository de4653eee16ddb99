import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../providers/azure/config.js';
import { parseConfig } from '../../src/config/load.js';
import { Daemon, createDaemonLogger } from '../../src/daemon/index.js';
import { AZURE_TEST_CONTAINER, AZURITE_ACCOUNT } from '../harness/azure.js';
import { tempDir } from '../harness/emulator.js';
import { LogCapture, waitFor } from './helpers.js';

/** A well-formed account key that Azurite does not know: a known fake secret to look for in the log. */
const FAKE_KEY = randomBytes(64).toString('base64');

describe.skipIf(!process.env.AZURE_STORAGE_CONNECTION_STRING)('daemon: a wrong Azure key', () => {
  it('the provider.down log line names the refusal and the credential, never the key', async () => {
    const dir = await tempDir('daemon-azure-auth');
    const endpoint = parseConnectionString(process.env.AZURE_STORAGE_CONNECTION_STRING!).blobEndpoint!;
    const container = process.env.AZURE_CONTAINER ?? AZURE_TEST_CONTAINER;
    const config = parseConfig({
      providers: [{ name: 'azure', url: `az://${AZURITE_ACCOUNT}/${container}?endpoint=${encodeURIComponent(endpoint)}`, options: { accountKey: '${WRONG_AZURE_KEY}' } }],
      state: { sqlite: { path: `${dir.path}/state.db` } },
      health: { probeIntervalMs: 100 },
      daemon: { listen: { port: 0 }, shutdownGraceMs: 100, probeTimeoutMs: 5_000, scan: { intervalMs: 0 } },
    }, { env: { WRONG_AZURE_KEY: FAKE_KEY } });
    const log = new LogCapture();
    const d = await Daemon.start({ config, logger: createDaemonLogger('debug', log), processMetrics: false });
    try {
      const down = await waitFor('provider.down', () => log.events('provider.down')[0], 30_000);
      expect(down.reason).toMatch(new RegExp(`^2 canary probes failed in a row; last: put: AuthFailed: Azure could not authenticate the request \\(AuthorizationFailure\\); `
        + `credential: the account key in options.accountKey \\(account ${AZURITE_ACCOUNT}\\)$`));
      expect(down.msg).toContain('AuthFailed');
    } finally {
      await d.stop({ graceMs: 100 });
      await dir.remove();
    }
    expect(log.text()).not.toContain(FAKE_KEY);
    expect(log.text()).not.toContain(FAKE_KEY.slice(0, 20));
  });
});
