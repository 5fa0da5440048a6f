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

    // DAPR_API_TOKEN on the sidecar: the SDK sends it as the dapr-api-token
    // header (HTTP) or metadata (gRPC) when given daprApiToken.
    test(`${proto}: a sidecar with an API token takes the SDK's daprApiToken`, async () => {
      const token = unique("token");
      const own = await startSidecar({ env: { DAPR_API_TOKEN: token } });
      const c = own.client(protocol, { daprApiToken: token });
      try {
        await c.state.save("memstore", [{ key: "k", value: { ok: true } }]);
        assert.deepEqual(await c.state.get("memstore", "k"), { ok: true });
        assert.equal((await c.metadata.get()).id, own.appId);
        // Without the token the API refuses (plain HTTP here: the SDK would
        // keep polling for a sidecar it cannot reach).
        const res = await fetch(`${own.httpUrl}/v1.0/state/memstore/k`, { signal: AbortSignal.timeout(5000) });
        assert.equal(res.status, 401);
      }
      catch (e) {
        process.stderr.write(`\n==== API-token sidecar output ====\n${own.output()}\n`);
        throw e;
      }
      finally {
        await c.stop();
        await own.stop();
      }
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
