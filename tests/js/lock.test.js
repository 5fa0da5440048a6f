// The distributed lock API through the JavaScript SDK (client.lock.lock /
// client.lock.unlock), with its HTTP and its gRPC client, on a Redis lock
// store and spar's SQLite lock store.

"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { after, before, describe } = require("node:test");

const { PROTOCOLS, componentYaml, sparTest, startSidecar, unique } = require("./harness");

const STORES = ["redislock", "sqlitelock"];
// The SDK's LockStatus values (daprd's UnlockResponse.Status).
const SUCCESS = 0;
const DOES_NOT_EXIST = 1;
const BELONGS_TO_OTHERS = 2;

// Outside the sidecar's own directory (the harness makes that when it
// starts); removed with its WAL files afterwards.
const DB = path.join(os.tmpdir(), `${unique("spar-js-locks")}.db`);

let sc;
before(async () => {
  sc = await startSidecar({
    resources: [
      componentYaml("redislock", "lock.redis", { redisHost: "127.0.0.1:6379" }),
      componentYaml("sqlitelock", "lock.sqlite", {
        connectionString: DB,
      }),
    ],
  });
});
after(async () => {
  await sc?.stop();
  for (const f of [DB, `${DB}-wal`, `${DB}-shm`]) {
    fs.rmSync(f, { force: true });
  }
});
const test = sparTest(() => [sc]);

for (const [proto, protocol] of PROTOCOLS) {
  describe(`lock over ${proto}`, () => {
    let client;
    before(() => {
      client = sc.client(protocol);
    });
    after(async () => {
      await client?.stop();
    });

    for (const store of STORES) {
      test(`${proto} ${store}: lock, held for others, unlock answers`, async () => {
        const r = unique("js-lock");
        assert.equal((await client.lock.lock(store, r, "alice", 30)).success, true);
        assert.equal((await client.lock.lock(store, r, "bob", 30)).success, false);
        assert.equal((await client.lock.unlock(store, r, "bob")).status, BELONGS_TO_OTHERS);
        assert.equal((await client.lock.unlock(store, r, "alice")).status, SUCCESS);
        assert.equal((await client.lock.unlock(store, r, "alice")).status, DOES_NOT_EXIST);
      });

      test(`${proto} ${store}: 20 owners race, one wins`, async () => {
        const r = unique("js-race");
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => client.lock.lock(store, r, `owner-${i}`, 30)),
        );
        const winners = results.map((x, i) => (x.success ? i : -1)).filter((i) => i >= 0);
        assert.equal(winners.length, 1, `winners: ${winners}`);
        assert.equal((await client.lock.unlock(store, r, `owner-${winners[0]}`)).status, SUCCESS);
      });
    }
  });
}
