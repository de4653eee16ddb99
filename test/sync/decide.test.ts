import { describe, expect, it } from 'vitest';
import { ConflictPolicies } from '../../src/sync/conflict-policies.js';
import { decide, pairRenames, type DecideContext } from '../../src/sync/decide.js';
import type { BaseEntry, LocalEntry, PathFacts, RemoteEntry } from '../../src/sync/types.js';
import { formatHlc } from '../../src/sync/hlc.js';

/** A stamp at wall time `ms` by `device`. */
const at = (ms: number, device = 'x'): string => formatHlc({ wall: ms, counter: 0, device });
/** Stamps beyond this wall time are from a clock running ahead (not trusted). */
const FUTURE = 1_000_000;

const stamp = { ino: '1', size: 1, mtimeNs: '1', ctimeNs: '1' };
const base = (sha: string, etag = `e-${sha}`): BaseEntry => ({ size: 1, sha256: sha, etag, stamp, hlc: at(1, 'a'), device: 'a' });
const local = (sha: string, hlc = at(5, 'me')): LocalEntry => ({ size: 1, sha256: sha, stamp, hlc });
const remote = (sha: string, etag = `e-${sha}`, hlc = at(4, 'b'), device = 'b'): RemoteEntry => ({ size: 1, sha256: sha, etag, hlc, device });

function ctx(policy = 'keep-both', device = 'me'): DecideContext {
  const p = new ConflictPolicies([policy]);
  return { device, compareStamps: (a, b) => (a < b ? -1 : a > b ? 1 : 0), trusts: (s) => s !== '' && Number.parseInt(s.slice(0, 12), 16) < FUTURE, policyFor: (x) => p.policyFor(x) };
}

const f = (b?: BaseEntry, l?: LocalEntry, r?: RemoteEntry): PathFacts => ({ path: 'p', base: b, local: l, remote: r });

describe('decide: every row of the case table', () => {
  const rows: [string, PathFacts, Record<string, unknown>][] = [
    ['nothing anywhere', f(), { kind: 'none', case: 'absent' }],
    ['created locally', f(undefined, local('x')), { kind: 'upload', case: 'local-created' }],
    ['created remotely', f(undefined, undefined, remote('x')), { kind: 'download', case: 'remote-created' }],
    ['created on both sides, same bytes', f(undefined, local('x'), remote('x')), { kind: 'record', case: 'both-created-same' }],
    ['created on both sides, different bytes', f(undefined, local('x'), remote('y')), { kind: 'keep-both', case: 'both-created-differ' }],
    ['unchanged', f(base('a'), local('a'), remote('a')), { kind: 'none', case: 'unchanged' }],
    ['unchanged bytes, new etag (metadata rewrite)', f(base('a'), local('a'), remote('a', 'e2')), { kind: 'none', case: 'unchanged' }],
    ['changed locally', f(base('a'), local('b'), remote('a')), { kind: 'upload', case: 'local-changed', ifMatch: 'e-a' }],
    ['changed remotely', f(base('a'), local('a'), remote('b')), { kind: 'download', case: 'remote-changed' }],
    ['changed on both sides to the same bytes', f(base('a'), local('b'), remote('b')), { kind: 'record', case: 'both-changed-same' }],
    ['changed on both sides, different bytes', f(base('a'), local('b'), remote('c')), { kind: 'keep-both', case: 'both-changed-differ' }],
    ['deleted locally, unchanged remotely', f(base('a'), undefined, remote('a')), { kind: 'delete-remote', case: 'local-deleted', ifMatch: 'e-a' }],
    ['deleted remotely, unchanged locally', f(base('a'), local('a')), { kind: 'delete-local', case: 'remote-deleted' }],
    ['deleted on both sides', f(base('a')), { kind: 'forget', case: 'both-deleted' }],
    ['deleted locally, changed remotely: the change wins', f(base('a'), undefined, remote('b')), { kind: 'download', case: 'local-deleted-remote-changed' }],
    ['changed locally, deleted remotely: the change wins', f(base('a'), local('b')), { kind: 'upload', case: 'local-changed-remote-deleted' }],
  ];
  for (const [name, facts, expected] of rows) {
    it(name, () => {
      expect(decide(facts, ctx())).toMatchObject(expected);
    });
  }
});

describe('decide: remote writes are conditional', () => {
  it('a create, or a change meeting a remote delete, is create-only (no ifMatch)', () => {
    expect(decide(f(undefined, local('x')), ctx())).not.toHaveProperty('ifMatch');
    expect(decide(f(base('a'), local('b')), ctx())).not.toHaveProperty('ifMatch');
  });
  it('an overwrite or delete is conditional on the etag the round saw', () => {
    expect(decide(f(base('a'), local('b'), remote('a', 'seen')), ctx())).toMatchObject({ ifMatch: 'seen' });
    expect(decide(f(base('a'), undefined, remote('a', 'seen')), ctx())).toMatchObject({ ifMatch: 'seen' });
  });
});

describe('decide: conflict policies', () => {
  const conflict = f(base('a'), local('b', at(9, 'me')), remote('c', 'e-c', at(4, 'b'), 'b'));
  it('local: local wins, conditional on the remote etag', () => {
    expect(decide(conflict, ctx('local'))).toMatchObject({ kind: 'local-wins', ifMatch: 'e-c', policy: 'local' });
  });
  it('remote: remote wins', () => {
    expect(decide(conflict, ctx('remote'))).toMatchObject({ kind: 'remote-wins', policy: 'remote' });
  });
  it('newest: the larger HLC stamp wins, whichever side it is on', () => {
    expect(decide(conflict, ctx('newest'))).toMatchObject({ kind: 'local-wins' });
    const remoteNewer = f(base('a'), local('b', at(2, 'me')), remote('c', 'e-c', at(4, 'b')));
    expect(decide(remoteNewer, ctx('newest'))).toMatchObject({ kind: 'remote-wins' });
  });
  it('newest: equal wall times are broken by the device id in the stamp (the same answer on both devices)', () => {
    const tie = (me: string) => f(base('a'), local('b', at(4, me)), remote('c', 'e-c', at(4, 'bob'), 'bob'));
    expect(decide(tie('alice'), ctx('newest', 'alice'))).toMatchObject({ kind: 'remote-wins' });
    expect(decide(tie('carol'), ctx('newest', 'carol'))).toMatchObject({ kind: 'local-wins' });
  });
  it('newest: a stamp from a clock running ahead, or no stamp (a foreign write), never wins: keep both', () => {
    const ahead = f(base('a'), local('b', at(9, 'me')), remote('c', 'e-c', at(FUTURE + 5, 'fast'), 'fast'));
    expect(decide(ahead, ctx('newest'))).toMatchObject({ kind: 'keep-both', policy: 'newest' });
    const foreign = f(base('a'), local('b', at(9, 'me')), remote('c', 'e-c', '', ''));
    expect(decide(foreign, ctx('newest'))).toMatchObject({ kind: 'keep-both', policy: 'newest' });
  });
  it('merge:<name> asks for the merger', () => {
    expect(decide(conflict, ctx('merge:text'))).toMatchObject({ kind: 'merge', merger: 'text' });
  });
  it('per-glob rules: first match wins, the bare policy is the default', () => {
    const p = new ConflictPolicies(['**/*.ydoc=merge:yjs', 'notes/**=newest', 'remote']);
    expect(p.policyFor('a/b.ydoc')).toEqual({ kind: 'merge', merger: 'yjs' });
    expect(p.policyFor('notes/x.md')).toEqual({ kind: 'newest' });
    expect(p.policyFor('other.txt')).toEqual({ kind: 'remote' });
    expect(new ConflictPolicies().policyFor('x')).toEqual({ kind: 'keep-both' });
  });
  it('bad policies are InvalidArgument naming what is accepted', () => {
    expect(() => new ConflictPolicies(['sometimes'])).toThrow(/expected one of keep-both, newest, local, remote, merge:<merger>/);
    expect(() => new ConflictPolicies(['=local'])).toThrow(/empty glob/);
    expect(() => new ConflictPolicies(['*.txt=merge:'])).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
  });
  it('deletions never meet a policy: a change always beats a delete', () => {
    for (const policy of ['keep-both', 'newest', 'local', 'remote', 'merge:text']) {
      expect(decide(f(base('a'), undefined, remote('b')), ctx(policy)).kind).toBe('download');
      expect(decide(f(base('a'), local('b')), ctx(policy)).kind).toBe('upload');
    }
  });
});

describe('pairRenames', () => {
  function plan(facts: PathFacts[]) {
    const map = new Map(facts.map((x) => [x.path, x]));
    return pairRenames(facts.map((x) => decide(x, ctx())), map);
  }
  it('a local delete + local create of the same bytes is a remote rename (copy + delete)', () => {
    const out = plan([
      { path: 'old.txt', base: base('a'), remote: remote('a') },
      { path: 'new.txt', local: local('a') },
    ]);
    expect(out).toEqual([{ kind: 'rename-remote', path: 'new.txt', from: 'old.txt', case: 'renamed-locally', ifMatch: 'e-a' }]);
  });
  it('a remote delete + remote create of the same bytes is a local move', () => {
    const out = plan([
      { path: 'old.txt', base: base('a'), local: local('a') },
      { path: 'dir/new.txt', remote: remote('a') },
    ]);
    expect(out).toEqual([{ kind: 'rename-local', path: 'dir/new.txt', from: 'old.txt', case: 'renamed-remotely' }]);
  });
  it('pairs one to one; extra creates stay uploads, different bytes are not renames', () => {
    const out = plan([
      { path: 'a', base: base('x'), remote: remote('x') },
      { path: 'b', local: local('x') },
      { path: 'c', local: local('x') },
      { path: 'd', local: local('y') },
    ]);
    expect(out.map((a) => [a.path, a.kind])).toEqual([['b', 'rename-remote'], ['c', 'upload'], ['d', 'upload']]);
  });
  it('a delete that meets a remote change is not taken for a rename', () => {
    const out = plan([
      { path: 'a', base: base('x'), remote: remote('z') },
      { path: 'b', local: local('x') },
    ]);
    expect(out.map((a) => [a.path, a.kind])).toEqual([['a', 'download'], ['b', 'upload']]);
  });
});
