// The configuration API through the JavaScript SDK (client.configuration:
// get, subscribeWithKeys, stop), which the SDK offers over gRPC only, on a
// Redis configuration store edited with redis-cli as an operator would.

"use strict";

const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const { after, before, describe } = require("node:test");
const { CommunicationProtocolEnum } = require("@dapr/dapr");

const { componentYaml, sleep, sparTest, startSidecar, unique, waitFor } = require("./harness");

const STORE = "redisconfig";

// daprd's Redis layout: "value||version".
function redisSet(key, value, version) {
  execFileSync("redis-cli", ["SET", key, `${value}||${version}`]);
}
function redisDel(...keys) {
  execFileSync("redis-cli", ["DEL", ...keys]);
}

let sc;
before(async () => {
  sc = await startSidecar({
    resources: [componentYaml(STORE, "configuration.redis", { redisHost: "127.0.0.1:6379" })],
  });
});
after(async () => {
  await sc?.stop();
});
const test = sparTest(() => [sc]);

describe("configuration over grpc", () => {
  let client;
  const keys = [];
  const key = (p) => {
    const k = unique(p);
    keys.push(k);
    return k;
  };
  before(() => {
    client = sc.client(CommunicationProtocolEnum.GRPC);
  });
  after(async () => {
    await client?.stop();
    if (keys.length) {
      redisDel(...keys);
    }
  });

  test("get several keys: values and versions, missing keys left out", async () => {
    const [a, b, none] = [key("js-cfg-a"), key("js-cfg-b"), key("js-cfg-none")];
    redisSet(a, "alpha", "1");
    redisSet(b, "beta", "7");
    const r = await client.configuration.get(STORE, [a, b, none]);
    assert.deepEqual(Object.keys(r.items).sort(), [a, b].sort());
    assert.equal(r.items[a].value, "alpha");
    assert.equal(r.items[a].version, "1");
    assert.equal(r.items[b].value, "beta");
    assert.equal(r.items[b].version, "7");
  });

  test("subscribe sees each change; after stop() none arrives", async () => {
    const k = key("js-cfg-sub");
    redisSet(k, "first", "1");
    const seen = [];
    const sub = await client.configuration.subscribeWithKeys(STORE, [k], (u) => {
      if (u.items[k]) {
        seen.push(u.items[k].value);
      }
    });
    // The stream is open once the sidecar has answered its first message;
    // writes until one is seen cover the moment before that.
    await waitFor("the first change", () => {
      redisSet(k, "second", "2");
      return seen.includes("second");
    });
    redisSet(k, "third", "3");
    await waitFor("the second change", () => seen.includes("third"));
    await sub.stop();
    await sleep(300);
    const before = seen.length;
    redisSet(k, "fourth", "4");
    await sleep(500);
    assert.equal(seen.length, before, `after stop: ${seen}`);
  });

  test("two subscriptions on one key each get every change", async () => {
    const k = key("js-cfg-two");
    const seen = [[], []];
    const subs = await Promise.all(
      seen.map((s) => client.configuration.subscribeWithKeys(STORE, [k], (u) => u.items[k] && s.push(u.items[k].value))),
    );
    await waitFor("both streams open", () => {
      redisSet(k, "ping", "0");
      return seen.every((s) => s.includes("ping"));
    });
    for (let i = 1; i <= 5; i++) {
      redisSet(k, `v${i}`, String(i));
    }
    await waitFor("v5 on both", () => seen.every((s) => s.includes("v5")));
    for (const s of seen) {
      for (let i = 1; i <= 5; i++) {
        assert.ok(s.includes(`v${i}`), `missing v${i}: ${s}`);
      }
    }
    await Promise.all(subs.map((s) => s.stop()));
  });

  test("an unknown store is an error", async () => {
    await assert.rejects(client.configuration.get("no-such-store", ["k"]), /not found|ERR_CONFIGURATION_STORE_NOT_FOUND/i);
  });
});
