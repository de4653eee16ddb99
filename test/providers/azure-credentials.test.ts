import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AzureStore, parseConnectionString, resolveAzureConfig } from '../../providers/azure/index.js';
import { CloudmuxError } from '../../src/core/errors.js';
import { AZURE_TEST_CONTAINER, AZURITE_ACCOUNT } from '../harness/azure.js';

/** Known fake secrets: none of them may appear in an error. */
const FAKE_KEY = randomBytes(64).toString('base64');
const FAKE_SIG = `fakesig${randomBytes(8).toString('hex')}`;
const HTTP_URL = new URL(`az://${AZURITE_ACCOUNT}/box?endpoint=${encodeURIComponent(`http://127.0.0.1:1/${AZURITE_ACCOUNT}`)}`);

function configError(fn: () => unknown): CloudmuxError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CloudmuxError);
    expect((e as CloudmuxError).code).toBe('InvalidConfig');
    for (const secret of [FAKE_KEY, FAKE_SIG]) expect(String((e as Error).message)).not.toContain(secret);
    return e as CloudmuxError;
  }
  throw new Error('expected an InvalidConfig error');
}

describe('azure credentials: say what was tried and why it failed', () => {
  it('no credential and an http endpoint: refused at once, listing what was looked for (was: "Bearer … not permitted for non-TLS URLs" at the first request)', () => {
    const e = configError(() => resolveAzureConfig(HTTP_URL, {}, {}));
    expect(e.message).toBe(`azure: no account key or SAS for account ${AZURITE_ACCOUNT}: AZURE_STORAGE_CONNECTION_STRING is not set; `
      + 'no accountKey, sasToken or connectionString option; AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN are not set; '
      + `and Azure AD (DefaultAzureCredential) cannot be used with the http endpoint http://127.0.0.1:1/${AZURITE_ACCOUNT}: give a connection string, account key or SAS`);
  });

  it('a malformed AZURE_STORAGE_CONNECTION_STRING is named, not ignored, and its value never echoed', () => {
    const env = { AZURE_STORAGE_CONNECTION_STRING: `${FAKE_KEY};Account=${FAKE_SIG}` };
    expect(configError(() => resolveAzureConfig(HTTP_URL, {}, env)).message)
      .toMatch(/AZURE_STORAGE_CONNECTION_STRING is not a storage connection string \(expected Key=Value pairs .*; found 2 part\(s\) that are not Key=Value fields of a connection string\)/);
    // With an https endpoint, DefaultAzureCredential would be tried next; a broken variable is reported instead.
    expect(configError(() => resolveAzureConfig(new URL('az://acct/box'), {}, env)).message).toMatch(/fix or unset AZURE_STORAGE_CONNECTION_STRING$/);
    expect(configError(() => resolveAzureConfig(new URL('az://acct/box'), { connectionString: `AccountKey=${FAKE_KEY}` }, {})).message)
      .toBe('options.connectionString is not an Azure Storage connection string: AccountKey without AccountName');
    // A usable credential elsewhere wins over a broken variable.
    expect(resolveAzureConfig(HTTP_URL, { accountKey: FAKE_KEY }, env).credentialSource).toBe(`the account key in options.accountKey (account ${AZURITE_ACCOUNT})`);
  });

  it('a SAS connection string without AccountName is used for the account its BlobEndpoint names', () => {
    const sasCs = `BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2024-01-01&sig=${FAKE_SIG}`;
    const c = resolveAzureConfig(new URL('az://acct/box'), {}, { AZURE_STORAGE_CONNECTION_STRING: sasCs });
    expect(c.auth).toEqual({ kind: 'sas', sasToken: `sv=2024-01-01&sig=${FAKE_SIG}` });
    expect(c.credentialSource).toBe('the SAS in AZURE_STORAGE_CONNECTION_STRING');
    expect(c.endpoint).toBe('https://acct.blob.core.windows.net');
    // Azurite style: the account is the endpoint's first path segment.
    const azurite = resolveAzureConfig(new URL(`az://${AZURITE_ACCOUNT}/box`), {}, {
      AZURE_STORAGE_CONNECTION_STRING: `BlobEndpoint=http://127.0.0.1:1/${AZURITE_ACCOUNT};SharedAccessSignature=sv=1&sig=${FAKE_SIG}`,
    });
    expect(azurite.auth.kind).toBe('sas');
    // One for another account is still ignored, and that is said when nothing else is found.
    const e = configError(() => resolveAzureConfig(HTTP_URL, {}, { AZURE_STORAGE_CONNECTION_STRING: sasCs }));
    expect(e.message).toContain(`AZURE_STORAGE_CONNECTION_STRING is for account acct, not ${AZURITE_ACCOUNT}`);
    expect(parseConnectionString(sasCs).accountName).toBeUndefined();
  });

  it('falls back to DefaultAzureCredential over https, saying why', () => {
    const c = resolveAzureConfig(new URL('az://acct/box'), {}, {});
    expect(c.auth.kind).toBe('defaultCredential');
    expect(c.credentialSource).toBe('DefaultAzureCredential (Azure AD), as there is no account key or SAS for account acct: '
      + 'AZURE_STORAGE_CONNECTION_STRING is not set; no accountKey, sasToken or connectionString option; AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN are not set');
  });

  it.skipIf(!process.env.AZURE_STORAGE_CONNECTION_STRING)('a wrong key: the error names the code and which credential was refused, never the key', async () => {
    const endpoint = parseConnectionString(process.env.AZURE_STORAGE_CONNECTION_STRING!).blobEndpoint!;
    const store = new AzureStore(resolveAzureConfig(undefined, { endpoint, account: AZURITE_ACCOUNT, container: process.env.AZURE_CONTAINER ?? AZURE_TEST_CONTAINER, accountKey: FAKE_KEY }, {}));
    try {
      const e = await store.put(`cred-${randomBytes(4).toString('hex')}`, 'x').then(() => undefined, (err: unknown) => err as CloudmuxError);
      expect(e?.code).toBe('AuthFailed');
      expect(e!.message).toMatch(new RegExp(`\\(AuthorizationFailure\\); credential: the account key in options.accountKey \\(account ${AZURITE_ACCOUNT}\\)$`));
      expect(`${e!.message} ${e!.stack} ${JSON.stringify(e)}`).not.toContain(FAKE_KEY);
    } finally {
      await store.close();
    }
  });
});
