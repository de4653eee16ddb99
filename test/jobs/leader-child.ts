/**
 * Child of the leader hand-over test: joins the election for a role on a PostgreSQL schema, prints
 * ELECTED when it leads, and stays until killed.
 * Usage: leader-child.ts <pg url> <schema> <role> <owner>
 */
import { LeaderElection } from '../../src/jobs/leader-election.js';
import { PostgresStateStore } from '../../src/state/postgres.js';

const [url, schema, role, owner] = process.argv.slice(2);
const state = await PostgresStateStore.open({ url: url!, schema: schema!, maxConnections: 2 });
const election = new LeaderElection({ state, role: role!, owner: owner!, checkMs: 100 });
election.on('elected', () => process.stdout.write('ELECTED\n'));
election.start();
setInterval(() => {}, 1 << 30);
