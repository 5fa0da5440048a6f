// The cryptography API through the JavaScript SDK (client.crypto.encrypt /
// decrypt, gRPC streams in Dapr's dapr.io/enc/v1 scheme; the SDK offers no
// HTTP face) on a crypto.dapr.localstorage component holding an RSA key in
// a PKCS#8 PEM file and a 256-bit symmetric key, as Dapr's docs make them.

"use strict";

const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { pipeline } = require("node:stream/promises");
const { Readable, Writable } = require("node:stream");
const { after, before, describe } = require("node:test");
const { CommunicationProtocolEnum } = require("@dapr/dapr");

const { componentYaml, sparTest, startSidecar } = require("./harness");

const COMPONENT = "localcrypto";
const SEGMENT = 64 * 1024;

const KEYS = fs.mkdtempSync(path.join(os.tmpdir(), "spar-js-keys-"));
const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
fs.writeFileSync(path.join(KEYS, "rsa-private-key.pem"), privateKey.export({ type: "pkcs8", format: "pem" }));
fs.writeFileSync(path.join(KEYS, "symmetric-key-256"), crypto.randomBytes(32).toString("base64"));
fs.writeFileSync(path.join(KEYS, "other-key-256"), crypto.randomBytes(32).toString("base64"));

let sc;
before(async () => {
  sc = await startSidecar({ resources: [componentYaml(COMPONENT, "crypto.dapr.localstorage", { path: KEYS })] });
});
after(async () => {
  await sc?.stop();
  fs.rmSync(KEYS, { recursive: true, force: true });
});
const test = sparTest(() => [sc]);

describe("crypto over grpc", () => {
  let client;
  before(() => {
    client = sc.client(CommunicationProtocolEnum.GRPC);
  });
  after(async () => {
    await client?.stop();
  });

  for (const [keyName, keyWrapAlgorithm] of [
    ["rsa-private-key.pem", "RSA"],
    ["symmetric-key-256", "AES"],
  ]) {
    for (const size of [1, SEGMENT, SEGMENT + 1, 1024 * 1024]) {
      test(`${keyWrapAlgorithm}: ${size} bytes round trip`, async () => {
        const data = crypto.randomBytes(size);
        const enc = await client.crypto.encrypt(data, { componentName: COMPONENT, keyName, keyWrapAlgorithm });
        assert.equal(enc.subarray(0, 15).toString(), "dapr.io/enc/v1\n");
        // (A single byte appears somewhere in any ciphertext by chance.)
        if (size >= 32) {
          assert.ok(!enc.includes(data.subarray(0, 32)), "plaintext visible");
        }
        const dec = await client.crypto.decrypt(enc, { componentName: COMPONENT });
        assert.ok(dec.equals(data));
      });
    }
  }

  test("chacha20-poly1305 and a decryption key named by the caller", async () => {
    const data = Buffer.from("spar ✓ ".repeat(1000));
    const enc = await client.crypto.encrypt(data, {
      componentName: COMPONENT,
      keyName: "symmetric-key-256",
      keyWrapAlgorithm: "AES",
      dataEncryptionCipher: "chacha20-poly1305",
      omitDecryptionKeyName: true,
    });
    // No key name in the header: the caller must say which key.
    const dec = await client.crypto.decrypt(enc, { componentName: COMPONENT, keyName: "symmetric-key-256" });
    assert.ok(dec.equals(data));
  });

  test("streams: 3 MiB piped through encrypt then decrypt", async () => {
    const data = crypto.randomBytes(3 * 1024 * 1024);
    const chunks = [];
    const sink = new Writable({
      write(c, _e, cb) {
        chunks.push(c);
        cb();
      },
    });
    const enc = await client.crypto.encrypt({
      componentName: COMPONENT,
      keyName: "rsa-private-key.pem",
      keyWrapAlgorithm: "RSA",
    });
    const dec = await client.crypto.decrypt({ componentName: COMPONENT });
    await pipeline(Readable.from([data.subarray(0, 1_000_000), data.subarray(1_000_000)]), enc, dec, sink);
    assert.ok(Buffer.concat(chunks).equals(data));
  });

  test("a tampered segment, a wrong key and an unknown key each fail", async () => {
    const data = crypto.randomBytes(SEGMENT + 10);
    const enc = await client.crypto.encrypt(data, {
      componentName: COMPONENT,
      keyName: "symmetric-key-256",
      keyWrapAlgorithm: "AES",
    });
    const tampered = Buffer.from(enc);
    tampered[tampered.length - 5] ^= 1;
    await assert.rejects(client.crypto.decrypt(tampered, { componentName: COMPONENT }));
    // The header names symmetric-key-256; another key cannot unwrap it.
    const unnamed = await client.crypto.encrypt(data, {
      componentName: COMPONENT,
      keyName: "symmetric-key-256",
      keyWrapAlgorithm: "AES",
      omitDecryptionKeyName: true,
    });
    await assert.rejects(client.crypto.decrypt(unnamed, { componentName: COMPONENT, keyName: "other-key-256" }));
    await assert.rejects(
      client.crypto.encrypt(data, { componentName: COMPONENT, keyName: "no-such-key", keyWrapAlgorithm: "AES" }),
    );
  });

  test("an unknown component is an error", async () => {
    await assert.rejects(
      client.crypto.encrypt(Buffer.from("x"), { componentName: "nope", keyName: "k", keyWrapAlgorithm: "AES" }),
    );
  });
});
