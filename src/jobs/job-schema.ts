/**
 * The tables of migration jobs and leased work (schema migration 4 of the PostgreSQL StateStore,
 * see src/state/postgres.ts). Keys are `text COLLATE "C"`: byte order, the providers' listing
 * order in a UTF-8 database. Every lease expires on the database's clock (`clock_timestamp()`).
 */
export function jobTablesSql(s: string): string {
  return `
CREATE TABLE ${s}.migration_jobs (
  name text PRIMARY KEY,
  spec text NOT NULL,
  spec_version integer NOT NULL,
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'complete')),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz
);
CREATE TABLE ${s}.migration_ranges (
  job text NOT NULL REFERENCES ${s}.migration_jobs (name) ON DELETE CASCADE,
  id bigint GENERATED ALWAYS AS IDENTITY,
  after_key text COLLATE "C",
  end_key text COLLATE "C",
  position text COLLATE "C",
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
  lease_owner text,
  lease_until timestamptz,
  split_wanted boolean NOT NULL DEFAULT false,
  listed bigint NOT NULL DEFAULT 0,
  extra bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (job, id)
);
CREATE TABLE ${s}.migration_objects (
  job text NOT NULL REFERENCES ${s}.migration_jobs (name) ON DELETE CASCADE,
  key text COLLATE "C" NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'claimed', 'copied', 'identical', 'failed', 'vanished')),
  size bigint NOT NULL,
  listing text NOT NULL,
  src_etag text,
  dst_etag text,
  sha256 text,
  verified_by text,
  checksum_mode text,
  reason text,
  copies integer NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  source_deleted boolean NOT NULL DEFAULT false,
  lease_owner text,
  lease_until timestamptz,
  claim_id bigint,
  worker text,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (job, key)
);
CREATE INDEX migration_objects_open ON ${s}.migration_objects (job, key) WHERE state IN ('pending', 'claimed');
CREATE TABLE ${s}.migration_claims (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job text NOT NULL,
  key text COLLATE "C" NOT NULL,
  worker text NOT NULL,
  claimed_at timestamptz NOT NULL,
  lease_until timestamptz NOT NULL,
  released_at timestamptz,
  outcome text
);
CREATE INDEX migration_claims_key ON ${s}.migration_claims (job, key, claimed_at);
CREATE TABLE ${s}.migration_workers (
  job text NOT NULL,
  worker text NOT NULL,
  host text NOT NULL,
  pid integer NOT NULL,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  seen_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  state text NOT NULL DEFAULT 'running',
  PRIMARY KEY (job, worker)
);
CREATE TABLE ${s}.scan_ranges (
  scan text NOT NULL,
  id integer NOT NULL,
  after_key text COLLATE "C",
  end_key text COLLATE "C",
  position text COLLATE "C",
  cycle bigint NOT NULL DEFAULT 0,
  lease_owner text,
  lease_until timestamptz,
  done_at timestamptz,
  PRIMARY KEY (scan, id)
);
CREATE TABLE ${s}.leaders (
  role text PRIMARY KEY,
  owner text NOT NULL,
  since timestamptz NOT NULL,
  seen_at timestamptz NOT NULL
);
`;
}

/**
 * Schema migration 6: range splits proposed by an idle worker from what the source holds
 * (src/jobs/range-probe.ts). `split_at` is the proposal the lister applies at its next progress
 * record when it has not listed past it; `split_after` rate-limits probing of one range (set when a
 * worker starts probing it; 'infinity' once it is too small to split). `split_wanted` stays for
 * workers of the previous version during a rolling upgrade; this version ignores it.
 */
export function rangeSplitSql(s: string): string {
  return `
ALTER TABLE ${s}.migration_ranges ADD COLUMN split_at text COLLATE "C", ADD COLUMN split_after timestamptz;
`;
}

/**
 * Schema migration 9: the resumable uploads of a job's large objects (src/jobs/job-uploads.ts),
 * the PostgreSQL counterpart of the local journal's `uploads` / `upload_parts`: a worker taking an
 * object over resumes the upload its previous holder left open instead of starting from byte 0.
 */
export function jobUploadsSql(s: string): string {
  return `
CREATE TABLE ${s}.migration_uploads (
  job text NOT NULL,
  key text COLLATE "C" NOT NULL,
  handle text NOT NULL,
  src_etag text NOT NULL,
  size bigint NOT NULL,
  part_size bigint NOT NULL,
  state text NOT NULL CHECK (state IN ('open', 'completed', 'aborted')),
  claim_id bigint NOT NULL,
  worker text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  resumes integer NOT NULL DEFAULT 0,
  detail text,
  PRIMARY KEY (job, key),
  FOREIGN KEY (job) REFERENCES ${s}.migration_jobs (name) ON DELETE CASCADE
);
CREATE TABLE ${s}.migration_upload_parts (
  job text NOT NULL,
  key text COLLATE "C" NOT NULL,
  part_number integer NOT NULL,
  size bigint NOT NULL,
  crc32c text NOT NULL,
  etag text,
  sha256 text,
  claim_id bigint NOT NULL,
  uploads integer NOT NULL DEFAULT 1,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (job, key, part_number),
  FOREIGN KEY (job, key) REFERENCES ${s}.migration_uploads (job, key) ON DELETE CASCADE
);
`;
}

/**
 * Schema migration 10: token buckets shared by every process on this database
 * (src/jobs/shared-token-bucket.ts): one row per bucket, its tokens as of `refilled_at` on the
 * database's clock.
 */
export function rateBucketsSql(s: string): string {
  return `
CREATE TABLE ${s}.rate_buckets (
  name text PRIMARY KEY,
  rate double precision NOT NULL CHECK (rate > 0),
  capacity double precision NOT NULL CHECK (capacity > 0),
  tokens double precision NOT NULL,
  refilled_at timestamptz NOT NULL,
  granted double precision NOT NULL DEFAULT 0
);
`;
}

/**
 * Schema migration 11: the priority class of each object of a job (0 critical, 1 normal, 2 bulk;
 * src/core/priority.ts), given by its lister from the job's rules. Workers of a job with rules claim
 * by (class, size, key) through the partial index; rows an older cloudmux inserts take normal.
 */
export function jobPrioritySql(s: string): string {
  return `
ALTER TABLE ${s}.migration_objects ADD COLUMN priority smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 2);
CREATE INDEX migration_objects_class ON ${s}.migration_objects (job, priority, size, key) WHERE state IN ('pending', 'claimed');
`;
}
