import { createHash, randomBytes } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { S3Store } from '../../providers/s3/index.js';
import { SHA256_KEY, getBuffer, resumableUploads } from '../../src/core/index.js';
import type { UploadedPart } from '../../src/core/index.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';
import { S3RVER_MARK, emulatorOptions } from '../harness/s3.js';

const MiB = 1024 * 1024;

interface FakeObject { metadata: Record<string, string>; size: number; etag: string }
interface FakeUpload { key: string; metadata: Record<string, string>; parts: Map<number, { etag: string; size: number; sha256?: string }> }
type Input = Record<string, unknown>;

/**
 * An S3 client whose requests never leave the process: a middleware answers each multipart
 * command from an in-memory model (s3rver lacks ListParts and AbortMultipartUpload). Real
 * command objects are built, so the driver's inputs are what S3 would receive.
 */
function fakeS3(opts: { pageSize?: number } = {}): { client: S3Client; calls: { name: string; input: Input }[]; uploads: Map<string, FakeUpload>; objects: Map<string, FakeObject> } {
  const client = new S3Client({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9', forcePathStyle: true, credentials: { accessKeyId: 'AKIAFAKEKEYID', secretAccessKey: 'supersecretvalue' }, maxAttempts: 1 });
  const calls: { name: string; input: Input }[] = [];
  const uploads = new Map<string, FakeUpload>();
  const objects = new Map<string, FakeObject>();
  const fail = (name: string, status: number): never => {
    throw Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
  };
  const upload = (i: Input): FakeUpload => uploads.get(i.UploadId as string) ?? fail('NoSuchUpload', 404);
  const answer = (name: string, i: Input): unknown => {
    switch (name) {
      case 'CreateMultipartUploadCommand': {
        const id = randomBytes(6).toString('hex');
        uploads.set(id, { key: i.Key as string, metadata: { ...(i.Metadata as Record<string, string>) }, parts: new Map() });
        return { UploadId: id };
      }
      case 'UploadPartCommand': {
        const u = upload(i);
        const body = i.Body as Buffer;
        const md5 = createHash('md5').update(body).digest();
        if (i.ContentMD5 !== undefined && i.ContentMD5 !== md5.toString('base64')) fail('BadDigest', 400);
        const sha = createHash('sha256').update(body).digest('base64');
        if (i.ChecksumSHA256 !== undefined && i.ChecksumSHA256 !== sha) fail('BadDigest', 400);
        const etag = `"${md5.toString('hex')}"`;
        u.parts.set(i.PartNumber as number, { etag, size: body.byteLength, ...(i.ChecksumSHA256 ? { sha256: sha } : {}) });
        return { ETag: etag, ...(i.ChecksumSHA256 ? { ChecksumSHA256: sha } : {}) };
      }
      case 'ListPartsCommand': {
        const u = upload(i);
        const after = Number(i.PartNumberMarker ?? 0);
        const all = [...u.parts.entries()].filter(([n]) => n > after).sort((a, b) => a[0] - b[0]);
        const page = all.slice(0, opts.pageSize ?? 1000);
        const truncated = all.length > page.length;
        return {
          Parts: page.map(([n, p]) => ({ PartNumber: n, ETag: p.etag, Size: p.size, ...(p.sha256 ? { ChecksumSHA256: p.sha256 } : {}) })),
          IsTruncated: truncated, NextPartNumberMarker: truncated ? String(page.at(-1)![0]) : undefined,
        };
      }
      case 'CompleteMultipartUploadCommand': {
        const u = upload(i);
        const parts = (i.MultipartUpload as { Parts: { PartNumber: number; ETag: string }[] }).Parts;
        let size = 0;
        for (const p of parts) {
          const have = u.parts.get(p.PartNumber);
          if (!have || have.etag !== p.ETag) fail('InvalidPart', 400);
          size += have!.size;
        }
        uploads.delete(i.UploadId as string);
        const etag = `"${randomBytes(4).toString('hex')}-${parts.length}"`;
        objects.set(u.key, { metadata: u.metadata, size, etag });
        return { ETag: etag };
      }
      case 'AbortMultipartUploadCommand':
        upload(i);
        uploads.delete(i.UploadId as string);
        return {};
      case 'CopyObjectCommand': {
        const o = objects.get(i.Key as string) ?? fail('NoSuchKey', 404);
        if (i.CopySourceIfMatch !== o.etag) fail('PreconditionFailed', 412);
        const etag = `"${randomBytes(4).toString('hex')}"`;
        objects.set(i.Key as string, { ...o, metadata: { ...(i.Metadata as Record<string, string>) }, etag });
        return { CopyObjectResult: { ETag: etag } };
      }
      default:
        return fail('NotImplemented', 501);
    }
  };
  client.middlewareStack.add((_next, context) => async (args) => {
    const name = context.commandName ?? '?';
    calls.push({ name, input: args.input as Input });
    return { output: { $metadata: {}, ...(answer(name, args.input as Input) as object) }, response: {} };
  }, { step: 'initialize', name: 'fakeS3' });
  return { client, calls, uploads, objects };
}

const names = (calls: { name: string }[]): string[] => calls.map((c) => c.name.replace(/Command$/, ''));

describe('s3 resumable uploads (multipart API through a fake client)', () => {
  const body = pseudoRandomBytes(11 * MiB, 's3-resumable');
  const partsOf = (partSize: number): Buffer[] => [0, 1, 2].map((i) => body.subarray(i * partSize, Math.min(body.byteLength, (i + 1) * partSize)));

  it('declares the capability and the part size it would use', () => {
    const { client } = fakeS3();
    const s = new S3Store({ bucket: 'bkt', client, partSize: 5 * MiB });
    expect(resumableUploads(s)).toBe(s);
    expect(s.multipartThreshold).toBe(5 * MiB);
    expect(s.uploadPartSize(11 * MiB)).toBe(5 * MiB);
    expect(s.uploadPartSize(100_000 * MiB)).toBe(10 * MiB); // within 10,000 parts
  });

  it('uploads parts with Content-MD5, lists them page by page, completes, then stamps cloudmux_sha256', async () => {
    const fake = fakeS3({ pageSize: 2 });
    const s = new S3Store({ bucket: 'bkt', prefix: 'pre', client: fake.client, partSize: 5 * MiB, flexibleChecksums: false });
    const handle = await s.startUpload('dir/obj', { size: body.byteLength, partSize: 5 * MiB, contentType: 'text/x', metadata: { a: 'b' } });
    expect(handle).not.toMatch(/supersecretvalue|AKIAFAKEKEYID/);
    const sent: UploadedPart[] = [];
    for (const [i, p] of partsOf(5 * MiB).entries()) sent.push(await s.uploadPart(handle, i + 1, p));
    expect(fake.calls.filter((c) => c.name === 'UploadPartCommand').every((c) => typeof c.input.ContentMD5 === 'string')).toBe(true);
    const listed = await s.listParts(handle);
    expect(listed).toEqual(sent.map((p) => ({ partNumber: p.partNumber, size: p.size, etag: p.etag })));
    expect(names(fake.calls).filter((n) => n === 'ListParts')).toHaveLength(2);
    const sha256 = sha256Hex(body);
    const meta = await s.completeUpload(handle, listed, { checksums: { sha256 } });
    expect(meta).toMatchObject({ key: 'dir/obj', size: body.byteLength, contentType: 'text/x', checksums: { sha256 } });
    expect(names(fake.calls).slice(-2)).toEqual(['CompleteMultipartUpload', 'CopyObject']);
    expect(fake.objects.get('pre/dir/obj')!.metadata).toEqual({ a: 'b', [SHA256_KEY]: sha256 });
    await expect(s.listParts(handle)).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('with the SHA-256 known at start it goes into CreateMultipartUpload; a different digest at completion is refused', async () => {
    const fake = fakeS3();
    const s = new S3Store({ bucket: 'bkt', client: fake.client, partSize: 5 * MiB });
    const sha256 = sha256Hex(body);
    const start = async (): Promise<{ handle: string; parts: UploadedPart[] }> => {
      const handle = await s.startUpload('k', { size: body.byteLength, partSize: 5 * MiB, sha256 });
      const parts: UploadedPart[] = [];
      for (const [i, p] of partsOf(5 * MiB).entries()) parts.push(await s.uploadPart(handle, i + 1, p));
      return { handle, parts };
    };
    const bad = await start();
    await expect(s.completeUpload(bad.handle, bad.parts, { checksums: { sha256: '0'.repeat(64) } })).rejects.toMatchObject({ code: 'IntegrityError' });
    expect(names(fake.calls)).not.toContain('CompleteMultipartUpload');
    const good = await start();
    await s.completeUpload(good.handle, good.parts, { checksums: { sha256 } });
    expect(names(fake.calls).at(-1)).toBe('CompleteMultipartUpload');
    expect(fake.calls.find((c) => c.name === 'CreateMultipartUploadCommand')!.input.Metadata).toEqual({ [SHA256_KEY]: sha256 });
  });

  it('with flexible checksums each part carries its SHA-256, listed back and passed to completion', async () => {
    const fake = fakeS3();
    const s = new S3Store({ bucket: 'bkt', client: fake.client, partSize: 5 * MiB, flexibleChecksums: true });
    const handle = await s.startUpload('k', { size: body.byteLength, partSize: 5 * MiB });
    expect(fake.calls[0]!.input.ChecksumAlgorithm).toBe('SHA256');
    const parts: UploadedPart[] = [];
    for (const [i, p] of partsOf(5 * MiB).entries()) parts.push(await s.uploadPart(handle, i + 1, p));
    expect(parts[0]!.checksums?.sha256).toBe(sha256Hex(partsOf(5 * MiB)[0]!));
    expect((await s.listParts(handle)).map((p) => p.checksums?.sha256)).toEqual(parts.map((p) => p.checksums?.sha256));
    await s.completeUpload(handle, parts, { checksums: { sha256: sha256Hex(body) } });
    const complete = fake.calls.find((c) => c.name === 'CompleteMultipartUploadCommand')!;
    expect((complete.input.MultipartUpload as { Parts: { ChecksumSHA256?: string }[] }).Parts.every((p) => typeof p.ChecksumSHA256 === 'string')).toBe(true);
  });

  it('refuses parts that would not tile the object, and incomplete part lists, before sending anything', async () => {
    const fake = fakeS3();
    const s = new S3Store({ bucket: 'bkt', client: fake.client, partSize: 5 * MiB });
    await expect(s.startUpload('k', { size: 20 * MiB, partSize: MiB })).rejects.toMatchObject({ code: 'InvalidArgument' });
    const handle = await s.startUpload('k', { size: body.byteLength, partSize: 5 * MiB });
    const before = fake.calls.length;
    await expect(s.uploadPart(handle, 1, Buffer.alloc(10))).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(s.uploadPart(handle, 4, Buffer.alloc(MiB))).rejects.toMatchObject({ code: 'InvalidArgument' });
    const p1 = await s.uploadPart(handle, 1, partsOf(5 * MiB)[0]!);
    await expect(s.completeUpload(handle, [p1], { checksums: { sha256: sha256Hex(body) } })).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(names(fake.calls.slice(before))).toEqual(['UploadPart']);
  });

  it('abort is idempotent; a handle of another bucket or prefix, or garbage, is InvalidArgument', async () => {
    const fake = fakeS3();
    const s = new S3Store({ bucket: 'bkt', prefix: 'a', client: fake.client, partSize: 5 * MiB });
    const handle = await s.startUpload('k', { size: body.byteLength, partSize: 5 * MiB });
    await s.abortUpload(handle);
    await s.abortUpload(handle);
    expect(fake.uploads.size).toBe(0);
    await expect(s.listParts(handle)).rejects.toMatchObject({ code: 'NotFound' });
    const other = new S3Store({ bucket: 'bkt', prefix: 'b', client: fake.client, partSize: 5 * MiB });
    await expect(other.listParts(handle)).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(s.listParts('{"v":1}')).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(s.listParts('not json')).rejects.toMatchObject({ code: 'InvalidArgument' });
  });
});

const onS3rver = process.env[S3RVER_MARK] === 's3rver';

describe.runIf(Boolean(process.env.S3_ENDPOINT))('s3 resumable uploads against the harness endpoint (needs S3_ENDPOINT)', () => {
  it('start, parts, complete: the object reads back with its SHA-256 (ListParts: NotSupported on s3rver)', async () => {
    const s = new S3Store(emulatorOptions({ prefix: `resumable-${randomBytes(3).toString('hex')}`, partSize: 5 * MiB }));
    try {
      const data = pseudoRandomBytes(11 * MiB, 'rs3');
      const handle = await s.startUpload('obj', { size: data.byteLength, partSize: 5 * MiB, metadata: { m: 'v' } });
      const parts: UploadedPart[] = [];
      for (let i = 0; i < 3; i++) parts.push(await s.uploadPart(handle, i + 1, data.subarray(i * 5 * MiB, Math.min(data.byteLength, (i + 1) * 5 * MiB))));
      if (onS3rver) await expect(s.listParts(handle)).rejects.toMatchObject({ code: 'NotSupported' });
      else expect((await s.listParts(handle)).map((p) => p.size)).toEqual([5 * MiB, 5 * MiB, MiB]);
      const meta = await s.completeUpload(handle, parts, { checksums: { sha256: sha256Hex(data) } });
      expect(meta.size).toBe(data.byteLength);
      expect((await getBuffer(s, 'obj')).equals(data)).toBe(true);
      const head = await s.head('obj');
      expect(head.metadata).toMatchObject({ m: 'v', [SHA256_KEY]: sha256Hex(data) });
      await s.delete('obj');
    } finally {
      await s.close();
    }
  });
});
