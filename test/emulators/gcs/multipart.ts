/**
 * A streaming reader for the `multipart/related` bodies of GCS multipart uploads: one small JSON
 * part (the object resource) and one data part. The data part is handed to `onData` as it arrives,
 * so a large body never sits in memory; at most one incoming chunk plus a delimiter's worth of
 * bytes is held.
 */

export class MultipartError extends Error {}

export interface MultipartResult {
  /** Text of the first part (the JSON object resource). */
  metadataText: string;
  /** Content-Type header of the data part. */
  dataContentType: string | undefined;
}

const MAX_HEADER_BYTES = 16 * 1024;

export async function readMultipartRelated(
  source: AsyncIterable<Buffer>,
  boundary: string,
  maxMetadataBytes: number,
  onData: (chunk: Buffer) => Promise<void>,
): Promise<MultipartResult> {
  const it = source[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  const more = async (): Promise<boolean> => {
    const r = await it.next();
    if (r.done) return false;
    const chunk = r.value as Buffer;
    buf = buf.byteLength === 0 ? chunk : Buffer.concat([buf, chunk]);
    return true;
  };
  const delimiter = Buffer.from(`--${boundary}`);
  const separator = Buffer.from(`\r\n--${boundary}`);

  let at: number;
  while ((at = buf.indexOf(delimiter)) < 0) {
    if (buf.byteLength > MAX_HEADER_BYTES) throw new MultipartError('no multipart boundary found');
    if (!(await more())) throw new MultipartError('body ended before the first boundary');
  }
  buf = buf.subarray(at + delimiter.byteLength);

  const readHeaders = async (): Promise<Record<string, string>> => {
    let end: number;
    while ((end = buf.indexOf('\r\n\r\n')) < 0) {
      if (buf.byteLength > MAX_HEADER_BYTES) throw new MultipartError('multipart part headers too long');
      if (!(await more())) throw new MultipartError('body ended inside part headers');
    }
    const headers: Record<string, string> = {};
    for (const line of buf.subarray(0, end).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    buf = buf.subarray(end + 4);
    return headers;
  };

  await readHeaders();
  while ((at = buf.indexOf(separator)) < 0) {
    if (buf.byteLength > maxMetadataBytes) throw new MultipartError('metadata part too large');
    if (!(await more())) throw new MultipartError('body ended inside the metadata part');
  }
  const metadataText = buf.subarray(0, at).toString('utf8');
  buf = buf.subarray(at + separator.byteLength);

  const dataHeaders = await readHeaders();
  const keep = separator.byteLength - 1;
  for (;;) {
    at = buf.indexOf(separator);
    if (at >= 0) {
      if (at > 0) await onData(buf.subarray(0, at));
      break;
    }
    if (buf.byteLength > keep) {
      await onData(buf.subarray(0, buf.byteLength - keep));
      buf = Buffer.from(buf.subarray(buf.byteLength - keep));
    }
    if (!(await more())) throw new MultipartError('body ended inside the data part');
  }
  // Drain whatever follows the closing delimiter so the connection can be reused.
  while (await more()) buf = Buffer.alloc(0);
  return { metadataText, dataContentType: dataHeaders['content-type'] };
}
