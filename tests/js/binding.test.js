// Output bindings through the JavaScript SDK (client.binding.send), with
// its HTTP and its gRPC client: a bindings.localstorage create / get /
// delete round trip, and an unknown binding refused.

"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { after, before, describe } = require("node:test");

const { PROTOCOLS, componentYaml, sparTest, startSidecar, unique } = require("./harness");

const ROOT = path.join(os.tmpdir(), unique("spar-js-files"));

let sc;
before(async () => {
  sc = await startSidecar({
    resources: [componentYaml("files", "bindings.localstorage", { rootPath: ROOT })],
  });
});
after(async () => {
  await sc?.stop();
  fs.rmSync(ROOT, { recursive: true, force: true });
});
const test = sparTest(() => [sc]);

const text = (data) =>
  typeof data === "string" ? data : Buffer.from(data ?? []).toString("utf8");

for (const [proto, protocol] of PROTOCOLS) {
  describe(`bindings over ${proto}`, () => {
    let client;
    before(() => {
      client = sc.client(protocol);
    });
    after(async () => {
      await client?.stop();
    });

    test(`${proto}: localstorage create, get, delete`, async () => {
      const name = `${unique("js")}.txt`;
      await client.binding.send("files", "create", "hello js", { fileName: name });
      assert.equal(fs.readFileSync(path.join(ROOT, name), "utf8").replace(/^"|"$/g, ""), "hello js");
      const got = await client.binding.send("files", "get", undefined, { fileName: name });
      const data = proto === "grpc" ? text(got.data) : text(got);
      assert.match(data, /hello js/);
      await client.binding.send("files", "delete", undefined, { fileName: name });
      assert.equal(fs.existsSync(path.join(ROOT, name)), false);
    });

    test(`${proto}: an unknown binding is refused`, async () => {
      await assert.rejects(client.binding.send("nosuch", "get", undefined, {}));
    });
  });
}
