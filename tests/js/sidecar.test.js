// Secrets, metadata, health and shutdown through the JavaScript SDK's HTTP
// and gRPC clients.

"use strict";

const assert = require("node:assert/strict");
const { after, before, describe } = require("node:test");

const { PROTOCOLS, SECRETS, sparTest, startSidecar, unique, waitFor } = require("./harness");

let sc;
before(async () => {
  sc = await startSidecar();
});
after(async () => {
  await sc?.stop();
});

for (const [proto, protocol] of PROTOCOLS) {
  describe(`sidecar APIs over ${proto}`, () => {
    let client;
    before(() => {
      client = sc.client(protocol);
    });
    after(async () => {
      await client?.stop();
    });
    const test = sparTest(() => [sc]);

    test(`${proto}: secret get (local file store, nested keys, unicode, empty)`, async () => {
      assert.deepEqual(await client.secret.get("secretstore", "api-key"), { "api-key": SECRETS["api-key"] });
      // Nested JSON is flattened with the store's separator ":".
      assert.deepEqual(await client.secret.get("secretstore", "db:user"), { "db:user": "spär" });
      assert.deepEqual(await client.secret.get("secretstore", "db:password"), { "db:password": "p@ss wörd" });
      assert.deepEqual(await client.secret.get("secretstore", "empty"), { empty: "" });
    });

    test(`${proto}: secret get of a missing key or store fails`, async () => {
      await assert.rejects(client.secret.get("secretstore", unique("missing")));
      await assert.rejects(client.secret.get(unique("nostore"), "api-key"));
    });

    test(`${proto}: secret getBulk`, async () => {
      assert.deepEqual(await client.secret.getBulk("secretstore"), {
        "api-key": { "api-key": SECRETS["api-key"] },
        "db:user": { "db:user": "spär" },
        "db:password": { "db:password": "p@ss wörd" },
        empty: { empty: "" },
      });
    });

    test(`${proto}: metadata get lists the app id and components`, async () => {
      const md = await client.metadata.get();
      assert.equal(md.id, sc.appId);
      const comps = Object.fromEntries(md.components.map((c) => [c.name, c]));
      assert.equal(comps.statestore?.type, "state.sqlite");
      assert.equal(comps.memstore?.type, "state.in-memory");
      assert.equal(comps.redisstore?.type, "state.redis");
      assert.equal(comps.pubsub?.type, "pubsub.in-memory");
      assert.equal(comps.secretstore?.type, "secretstores.local.file");
      for (const c of md.components) {
        assert.equal(c.version, "v1");
      }
      assert.ok(comps.statestore.capabilities.includes("ETAG"));
      assert.ok(comps.statestore.capabilities.includes("TRANSACTIONAL"));
    });

    test(`${proto}: metadata set, then get shows it in extended`, async () => {
      const key = unique(`js-${proto}`);
      assert.equal(await client.metadata.set(key, "grüße ✓ {\"json\": [1]}"), true);
      assert.equal(await client.metadata.set(`${key}-empty`, ""), true);
      const { extended } = await client.metadata.get();
      assert.equal(extended[key], "grüße ✓ {\"json\": [1]}");
      assert.equal(extended[`${key}-empty`], "");
      // Set again: the value is replaced.
      await client.metadata.set(key, "second");
      assert.equal((await client.metadata.get()).extended[key], "second");
    });

    test(`${proto}: health`, async () => {
      assert.equal(await client.health.isHealthy(), true);
    });

    // A sidecar of its own: shutdown ends it.
    test(`${proto}: sidecar shutdown stops the sidecar, and health then says so`, async () => {
      const own = await startSidecar();
      const c = own.client(protocol);
      try {
        assert.equal(await c.health.isHealthy(), true);
        await c.sidecar.shutdown();
        const exit = await waitFor("the sidecar to exit", () => own.exit, 20_000);
        assert.equal(exit.code, 0, own.output());
        assert.equal(await c.health.isHealthy(), false);
      }
      finally {
        await c.stop();
        await own.stop();
      }
    });
  });
}
