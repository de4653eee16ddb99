import { createRequire } from 'node:module';
import type * as S3 from '@aws-sdk/client-s3';
import type * as Presigner from '@aws-sdk/s3-request-presigner';

// The SDK is loaded as CommonJS: its ESM entry makes Node load hundreds of dist-es files, its CJS
// one a single bundle (~60 ms less CPU to load on Node 20). Every SDK value in this provider comes
// from here, so a client a caller built with the ESM copy still works: the SDK is duck-typed
// between client and command.
const loadCjs = createRequire(import.meta.url);
export const {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand,
  DeleteObjectCommand, DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, ListPartsCommand,
  PutObjectCommand, S3Client, UploadPartCommand, UploadPartCopyCommand,
} = loadCjs('@aws-sdk/client-s3') as typeof S3;
export type S3Client = S3.S3Client;
export const { getSignedUrl } = loadCjs('@aws-sdk/s3-request-presigner') as typeof Presigner;
