// State management through the JavaScript SDK, with its default HTTP client
// and its gRPC client, on SQLite, in-memory and Redis stores.

"use strict";

const assert = require("node:assert/strict");
const { after, before, describe } = require("node:test");

const { StateConcurrencyEnum, StateConsistencyEnum } = require("@dapr/dapr");

const { PROTOCOLS, sleep, sparTest, startSidecar, unique, waitFor } = require("./harness");

const STORES = ["statestore", "memstore", "redisstore"];

// Values as apps store them: nested JSON, unicode, empty and falsy ones.
const ORDER = {
  id: 7,
  customer: { name: "Zoë Ångström", city: "Zürich", tags: ["vip", "日本語"] },
  lines: [{ sku: "☕", qty: 2, price: 3.5 }, { sku: "🥐", qty: 0, price: null }],
  note: "",
};

let sc;
before(async () => {
  sc = await startSidecar();
});
after(async () => {
  await sc?.stop();
});
const test = sparTest(() => [sc]);

/** The etag getBulk reports for key (the SDK's get returns the value only). */
async function etagOf(client, store, key) {
  const [item] = await client.state.getBulk(store, [key]);
  return item.etag;
}

/** A save or delete the store refused: HTTP returns {error}, gRPC throws. */
async function refused(op) {
  try {
    const res = await op();
    return Boolean(res?.error);
  }
  catch {
    return true;
  }
}

for (const [proto, protocol] of PROTOCOLS) {
  describe(`state over ${proto}`, () => {
    let client;
    before(() => {
      client = sc.client(protocol);
    });
    after(async () => {
      await client?.stop();
    });

    for (const store of STORES) {
      test(`${proto} ${store}: save, get, getBulk and delete nested, unicode and empty values`, async () => {
        const k = unique("órder-✓");
        const items = [
          { key: `${k}-obj`, value: ORDER },
          { key: `${k}-text`, value: "grüße, 世界" },
          { key: `${k}-empty`, value: "" },
          { key: `${k}-falsy`, value: [0, false, "", {}, []] },
          { key: `${k}-num`, value: 42 },
        ];
        assert.deepEqual(await client.state.save(store, items), {});

        assert.deepEqual(await client.state.get(store, `${k}-obj`), ORDER);
        assert.equal(await client.state.get(store, `${k}-text`), "grüße, 世界");
        assert.equal(await client.state.get(store, `${k}-empty`), "");
        assert.deepEqual(await client.state.get(store, `${k}-falsy`), [0, false, "", {}, []]);
        assert.equal(await client.state.get(store, `${k}-num`), 42);
        // A key never written reads as empty.
        assert.equal(await client.state.get(store, `${k}-missing`), "");
        // Strong consistency (HTTP: ?consistency=strong; gRPC: the enum).
        const strong = { consistency: StateConsistencyEnum.CONSISTENCY_STRONG };
        assert.deepEqual(await client.state.get(store, `${k}-obj`, strong), ORDER);

        const bulk = await client.state.getBulk(store, [`${k}-obj`, `${k}-text`, `${k}-missing`]);
        const byKey = Object.fromEntries(bulk.map((i) => [i.key, i]));
        assert.deepEqual(Object.keys(byKey).sort(), [`${k}-missing`, `${k}-obj`, `${k}-text`].sort());
        assert.deepEqual(byKey[`${k}-obj`].data, ORDER);
        assert.equal(byKey[`${k}-text`].data, "grüße, 世界");
        assert.ok(byKey[`${k}-obj`].etag, "getBulk reports an etag for a stored key");
        // A missing key comes back without data (HTTP) or with empty data (gRPC).
        assert.ok(byKey[`${k}-missing`].data === undefined || byKey[`${k}-missing`].data === "");

        assert.deepEqual(await client.state.delete(store, `${k}-obj`), {});
        assert.equal(await client.state.get(store, `${k}-obj`), "");
        // Deleting a key that is not there succeeds, as in daprd.
        assert.deepEqual(await client.state.delete(store, `${k}-missing`), {});
      });

      test(`${proto} ${store}: etags and first-write concurrency`, async () => {
        const k = unique("etag");
        await client.state.save(store, [{ key: k, value: { v: 1 } }]);
        const etag1 = await etagOf(client, store, k);
        assert.ok(etag1);

        const firstWrite = { concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE };
        // Right etag: saved, and the etag changes.
        assert.deepEqual(await client.state.save(store, [{ key: k, value: { v: 2 }, etag: etag1, options: firstWrite }]), {});
        const etag2 = await etagOf(client, store, k);
        assert.notEqual(etag2, etag1);
        assert.deepEqual(await client.state.get(store, k), { v: 2 });

        // Stale etag: refused, value unchanged.
        assert.ok(await refused(() => client.state.save(store, [{ key: k, value: { v: 3 }, etag: etag1, options: firstWrite }])));
        assert.deepEqual(await client.state.get(store, k), { v: 2 });

        // First-write without an etag on an existing key: refused.
        assert.ok(await refused(() => client.state.save(store, [{ key: k, value: { v: 4 }, options: firstWrite }])));
        // First-write without an etag on a new key: saved.
        const fresh = unique("etag-new");
        assert.deepEqual(await client.state.save(store, [{ key: fresh, value: "first", options: firstWrite }]), {});
        assert.equal(await client.state.get(store, fresh), "first");

        // Delete with a stale etag is refused; with the current one it deletes.
        assert.ok(await refused(() => client.state.delete(store, k, { etag: etag1 })));
        assert.deepEqual(await client.state.get(store, k), { v: 2 });
        assert.deepEqual(await client.state.delete(store, k, { etag: etag2 }), {});
        assert.equal(await client.state.get(store, k), "");
      });

      // daprd's stores differ on a save that carries an etag for a key that
      // does not exist: Redis (components-contrib state/redis/redis.go,
      // setDefaultQuery: `not etag` → write) saves it; in-memory and SQLite
      // answer an etag mismatch (409 / ABORTED).
      const etagOnMissingSaves = store === "redisstore";
      test(
        `${proto} ${store}: a save with an etag for a key that does not exist ${etagOnMissingSaves ? "is saved (as daprd's Redis store does)" : "is an etag mismatch"}`,
        {},
        async () => {
          const k = unique("etag-missing");
          const op = () =>
            client.state.save(store, [
              { key: k, value: "v", etag: "1", options: { concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE } },
            ]);
          if (etagOnMissingSaves) {
            assert.deepEqual(await op(), {});
            assert.equal(await client.state.get(store, k), "v");
          }
          else {
            assert.ok(await refused(op));
            assert.equal(await client.state.get(store, k), "");
          }
        },
      );

      // Strings only: the SDK's gRPC client sends a transaction value as
      // `Buffer.from(value)`, which has no JSON form for objects.
      test(`${proto} ${store}: transaction with metadata`, async () => {
        const k = unique("txn");
        await client.state.save(store, [{ key: `${k}-old`, value: "old" }]);
        await client.state.transaction(
          store,
          [
            { operation: "upsert", request: { key: `${k}-a`, value: "ä" } },
            { operation: "upsert", request: { key: `${k}-b`, value: "zwei 2" } },
            { operation: "delete", request: { key: `${k}-old` } },
          ],
          {},
        );
        assert.equal(await client.state.get(store, `${k}-a`), "ä");
        assert.equal(await client.state.get(store, `${k}-b`), "zwei 2");
        assert.equal(await client.state.get(store, `${k}-old`), "");
      });

      // The SDK's HTTP client sends `"metadata": null` when no metadata is
      // given (HTTPClient/state.js, transaction(…, metadata = null)). daprd
      // decodes it into its map as Go's encoding/json does (null → nil map)
      // and runs the transaction.
      test(
        `${proto} ${store}: transaction without metadata (the SDK sends metadata: null over HTTP)`,
        {},
        async () => {
          const k = unique("txn-null");
          await client.state.transaction(store, [
            { operation: "upsert", request: { key: k, value: "ok" } },
          ]);
          assert.equal(await client.state.get(store, k), "ok");
          await client.state.transaction(store, [{ operation: "delete", request: { key: k } }]);
          assert.equal(await client.state.get(store, k), "");
        },
      );

      test(`${proto} ${store}: ttlInSeconds, per item and for the whole request`, async () => {
        const k = unique("ttl");
        // Per item (HTTP: the item's metadata; gRPC: StateItem.metadata).
        await client.state.save(store, [
          { key: `${k}-item`, value: "short", metadata: { ttlInSeconds: "1" } },
          { key: `${k}-keep`, value: "kept" },
        ]);
        // Request-wide (HTTP: ?metadata.ttlInSeconds=1; gRPC: merged into each item).
        await client.state.save(store, [{ key: `${k}-req`, value: "short" }], { metadata: { ttlInSeconds: "1" } });
        assert.equal(await client.state.get(store, `${k}-keep`), "kept");
        // Expiry takes at least the TTL; allow a loaded machine plenty more.
        await sleep(1000);
        await waitFor(`${k}-item and ${k}-req to expire`, async () => {
          const [a, b] = await Promise.all([client.state.get(store, `${k}-item`), client.state.get(store, `${k}-req`)]);
          return a === "" && b === "";
        }, 15_000);
        assert.equal(await client.state.get(store, `${k}-keep`), "kept");
      });
    }

    test(`${proto} statestore: a 1 MB value and getBulk with parallelism`, async () => {
      const k = unique("big");
      // Under the SDK's and the sidecar's 4 MB body limits.
      const big = { rows: Array.from({ length: 8000 }, (_, i) => ({ i, text: `Zeile ${i}: ${"ä€😀".repeat(20)}` })) };
      assert.ok(Buffer.byteLength(JSON.stringify(big)) > 1_000_000);
      await client.state.save("statestore", [{ key: k, value: big }, { key: `${k}-small`, value: "klein" }]);
      assert.deepEqual(await client.state.get("statestore", k), big);
      const bulk = await client.state.getBulk("statestore", [k, `${k}-small`], { parallelism: 2 });
      assert.deepEqual(Object.fromEntries(bulk.map((i) => [i.key, i.data])), { [k]: big, [`${k}-small`]: "klein" });
    });

    // daprd: HTTP 400 ERR_STATE_STORE_NOT_FOUND, gRPC InvalidArgument
    // (pkg/api/errors/state.go StateStoreError.NotFound).
    test(`${proto}: a state store that does not exist`, async () => {
      const missing = unique("nostore");
      if (proto === "http") {
        await assert.rejects(client.state.get(missing, "k"), (e) => {
          const err = JSON.parse(e.message);
          return err.status === 400 && JSON.parse(err.error_msg).errorCode === "ERR_STATE_STORE_NOT_FOUND";
        });
        // save returns the error instead of throwing it.
        const res = await client.state.save(missing, [{ key: "k", value: 1 }]);
        assert.equal(JSON.parse(res.error.message).status, 400);
      }
      else {
        await assert.rejects(client.state.get(missing, "k"), (e) => e.code === 3);
        await assert.rejects(client.state.save(missing, [{ key: "k", value: 1 }]), (e) => e.code === 3);
      }
    });

    test(`${proto} statestore (SQLite): query with a filter, sort and paging`, async () => {
      const run = unique("query");
      const cities = ["Zürich", "Köln", "Zürich", "東京", "Zürich"];
      await client.state.save(
        "statestore",
        cities.map((city, n) => ({ key: `${run}-${n}`, value: { run, n, person: { city } } })),
      );
      const query = {
        filter: { AND: [{ EQ: { run } }, { EQ: { "person.city": "Zürich" } }] },
        sort: [{ key: "n", order: "DESC" }],
        page: { limit: 2 },
      };
      const page1 = await client.state.query("statestore", query);
      // The gRPC client hands data over as bytes; the HTTP one parsed JSON.
      const data = (r) => (r.data instanceof Uint8Array ? JSON.parse(Buffer.from(r.data).toString()) : r.data);
      assert.deepEqual(page1.results.map((r) => data(r).n), [4, 2]);
      assert.deepEqual(page1.results.map((r) => r.key), [`${run}-4`, `${run}-2`]);
      assert.ok(page1.token, "a full page carries a token for the next one");

      const page2 = await client.state.query("statestore", { ...query, page: { limit: 2, token: page1.token } });
      assert.deepEqual(page2.results.map((r) => data(r).n), [0]);
      assert.deepEqual(data(page2.results[0]).person, { city: "Zürich" });

      const none = await client.state.query("statestore", { filter: { EQ: { run: unique("nobody") } } });
      assert.deepEqual(none.results, []);
    });
  });
}
