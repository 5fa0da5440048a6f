// Publish and subscribe through the JavaScript SDK: apps served by the SDK's
// DaprServer (HTTP and gRPC app protocols) subscribe with
// server.pubsub.subscribe / subscribeBulk; the SDK's HTTP and gRPC clients
// publish JSON, text, CloudEvents and bulk batches through the app's
// sidecar (pub/sub `pubsub` is in memory, so publisher and subscriber share
// the sidecar).

"use strict";

const assert = require("node:assert/strict");
const { after, before, describe } = require("node:test");

const { DaprPubSubStatusEnum } = require("@dapr/dapr");

const { PROTOCOLS, sparTest, startApp, unique, waitFor } = require("./harness");

const PUBSUB = "pubsub";

for (const [appProto, appProtocol] of PROTOCOLS) {
  describe(`pub/sub to a ${appProto} app`, () => {
    // Unique per run, so a broker shared with other runs cannot interfere.
    const topics = {
      json: unique("orders"),
      text: unique("notes"),
      ce: unique("cloudevents"),
      bulkPub: unique("bulk-published"),
      bulkSub: unique("bulk-subscribed"),
      routed: unique("routed"),
      retried: unique("retried"),
      raw: unique("raw"),
      bulkRaw: unique("bulk-raw"),
    };
    // marker → how many times the RETRY callback saw it.
    const attempts = new Map();
    // topic → messages the app's callback got ({ data, headers }).
    const received = new Map([...Object.values(topics), "routed:priority", "routed:plain"].map((t) => [t, []]));
    const clients = {};
    let app;

    before(async () => {
      app = await startApp({
        protocol: appProtocol,
        setup: async (server) => {
          for (const topic of [topics.json, topics.text, topics.ce, topics.bulkPub]) {
            await server.pubsub.subscribe(PUBSUB, topic, async (data, headers) => {
              received.get(topic).push({ data, headers });
            });
          }
          await server.pubsub.subscribeBulk(
            PUBSUB,
            topics.bulkSub,
            async (data, headers) => {
              received.get(topics.bulkSub).push({ data, headers });
            },
            { maxMessagesCount: 5, maxAwaitDurationMs: 200 },
          );
          // Routing rules: events of one type to their own route.
          await server.pubsub.subscribeWithOptions(PUBSUB, topics.routed, {
            route: { default: "plain", rules: [{ match: 'event.type == "com.example.priority"', path: "priority" }] },
          });
          for (const route of ["priority", "plain"]) {
            server.pubsub.subscribeToRoute(PUBSUB, topics.routed, route, async (data) => {
              received.get(`routed:${route}`).push({ data });
            });
          }
          // RETRY the first delivery of each message, take the second.
          await server.pubsub.subscribe(PUBSUB, topics.retried, async (data, headers) => {
            const n = (attempts.get(data?.marker) ?? 0) + 1;
            attempts.set(data?.marker, n);
            if (n === 1) {
              return DaprPubSubStatusEnum.RETRY;
            }
            received.get(topics.retried).push({ data, headers });
            return DaprPubSubStatusEnum.SUCCESS;
          });
          // The SDK JSON-encodes subscription metadata values: a boolean
          // becomes "true".
          await server.pubsub.subscribe(
            PUBSUB,
            topics.raw,
            async (data, headers) => {
              received.get(topics.raw).push({ data, headers });
            },
            "",
            { rawPayload: true },
          );
          await server.pubsub.subscribeBulk(
            PUBSUB,
            topics.bulkRaw,
            async (data, headers) => {
              received.get(topics.bulkRaw).push({ data, headers });
            },
            { metadata: { rawPayload: true }, maxMessagesCount: 5, maxAwaitDurationMs: 200 },
          );
        },
      });
      // The sidecar has read the app's subscriptions once the metadata API
      // lists them.
      await waitFor("the app's subscriptions in the metadata API", async () => {
        const res = await fetch(`${app.sc.httpUrl}/v1.0/metadata`, { signal: AbortSignal.timeout(5000) });
        const md = await res.json();
        const seen = new Set((md.subscriptions ?? []).map((s) => s.topic));
        return Object.values(topics).every((t) => seen.has(t));
      });
      for (const [proto, protocol] of PROTOCOLS) {
        clients[proto] = app.sc.client(protocol);
      }
    });
    after(async () => {
      for (const c of Object.values(clients)) {
        await c.stop();
      }
      await app?.stop();
    });
    const test = sparTest(() => [app?.sc]);

    /** Waits for the message on topic whose data matches pred. */
    const arrival = (topic, pred) =>
      waitFor(`a message on ${topic}`, () => received.get(topic).find((m) => pred(m.data)), 15_000);

    for (const [proto] of PROTOCOLS) {
      test(`${proto} client → ${appProto} app: publish JSON`, async () => {
        const marker = unique("m");
        const order = {
          marker,
          customer: { name: "Zoë Ångström", address: { city: "Zürich", lines: ["Bahnhofstr. 1", ""] } },
          items: [{ sku: "☕", qty: 2 }, { sku: "🥐", qty: 0, note: null }],
          paid: false,
        };
        const res = await clients[proto].pubsub.publish(PUBSUB, topics.json, order);
        assert.deepEqual(res, {});
        const msg = await arrival(topics.json, (d) => d?.marker === marker);
        assert.deepEqual(msg.data, order);
      });

      test(`${proto} client → ${appProto} app: publish text`, async () => {
        const text = `grüße aus Köln — ${unique("t")} 🚲`;
        assert.deepEqual(await clients[proto].pubsub.publish(PUBSUB, topics.text, text), {});
        const msg = await arrival(topics.text, (d) => d === text);
        assert.equal(msg.data, text);
      });

      test(`${proto} client → ${appProto} app: publish a CloudEvent (kept, not wrapped again)`, async () => {
        const marker = unique("ce");
        // An object with id, source, type and specversion: the SDK sends it
        // as application/cloudevents+json.
        const event = {
          specversion: "1.0",
          id: marker,
          source: "js-sdk-test",
          type: "com.example.order.created",
          datacontenttype: "application/json",
          data: { marker, total: 12.5, currency: "€" },
        };
        assert.deepEqual(await clients[proto].pubsub.publish(PUBSUB, topics.ce, event), {});
        const msg = await arrival(topics.ce, (d) => d?.marker === marker);
        // The subscriber gets the event's own data: had the sidecar wrapped
        // the event in another envelope, data would be the whole event.
        assert.deepEqual(msg.data, event.data);
      });

      // The SDK's HTTP client sends entries as `{entryID, event, contentType,
      // metadata}` (utils/Client.util.js getBulkPublishEntries). daprd decodes
      // the body with encoding/json, whose field matching is
      // case-insensitive, so `entryID` fills `entryId`
      // (pkg/api/http/http.go onBulkPublish).
      test(
        `${proto} client → ${appProto} app: publishBulk`,
        {},
        async () => {
          const run = unique("b");
          const messages = [
            { run, n: 1, text: "één" },
            `${run} plain text ✓`,
            { run, n: 3, nested: { deep: [1, { deeper: "ß" }] } },
          ];
          const res = await clients[proto].pubsub.publishBulk(PUBSUB, topics.bulkPub, messages);
          assert.deepEqual(res.failedMessages, []);
          await waitFor("all three bulk-published messages", () =>
            received.get(topics.bulkPub).filter((m) => m.data?.run === run || m.data === messages[1]).length === 3,
          15_000);
          const got = received.get(topics.bulkPub).filter((m) => m.data?.run === run || m.data === messages[1]);
          const sortKey = (d) => (typeof d === "string" ? 2 : d.n);
          assert.deepEqual(got.map((m) => m.data).sort((a, b) => sortKey(a) - sortKey(b)), messages);
        },
      );

      test(`${proto} client → ${appProto} app: routing rules pick the route by event type`, async () => {
        const marker = unique("r");
        const priority = {
          specversion: "1.0",
          id: `${marker}-p`,
          source: "js-sdk-test",
          type: "com.example.priority",
          datacontenttype: "application/json",
          data: { marker, kind: "priority" },
        };
        const plain = { ...priority, id: `${marker}-n`, type: "com.example.plain", data: { marker, kind: "plain" } };
        await clients[proto].pubsub.publish(PUBSUB, topics.routed, priority);
        await clients[proto].pubsub.publish(PUBSUB, topics.routed, plain);
        const p = await arrival("routed:priority", (d) => d?.marker === marker);
        const n = await arrival("routed:plain", (d) => d?.marker === marker);
        assert.equal(p.data.kind, "priority");
        assert.equal(n.data.kind, "plain");
        assert.ok(!received.get("routed:plain").some((m) => m.data?.marker === marker && m.data.kind === "priority"));
      });

      test(`${proto} client → ${appProto} app: a message the app answers RETRY is delivered again`, async () => {
        const marker = unique("retry");
        await clients[proto].pubsub.publish(PUBSUB, topics.retried, { marker, text: "noch einmal" });
        const msg = await arrival(topics.retried, (d) => d?.marker === marker);
        assert.deepEqual(msg.data, { marker, text: "noch einmal" });
        assert.ok(attempts.get(marker) >= 2);
      });

      test(`${proto} client → ${appProto} app: rawPayload publish to a rawPayload subscription`, async () => {
        const marker = unique("raw");
        const payload = { marker, note: "keine Hülle", list: [1, "zwei", { drei: 3 }] };
        const res = await clients[proto].pubsub.publish(PUBSUB, topics.raw, payload, { metadata: { rawPayload: "true" } });
        assert.deepEqual(res, {});
        const msg = await arrival(topics.raw, (d) => d?.marker === marker);
        assert.deepEqual(msg.data, payload);
      });

      // daprd delivers a raw payload in a bulk batch as the bytes
      // themselves: HTTP `{entryId, event: <base64>, contentType:
      // "application/octet-stream"}` (pkg/runtime/subscription/
      // bulksubscription.go; a published message has no content type of
      // its own, pkg/api/http/http.go onPublish), gRPC a `bytes` entry. The SDK decodes the first
      // only when contentType is application/octet-stream.
      test(
        `${proto} client → ${appProto} app: bulk subscribe with rawPayload`,
        {},
        async () => {
          const marker = unique("bulkraw");
          const payload = { marker, city: "Malmö", empty: "" };
          // Tests run one at a time: the next message on the topic is this
          // one, whatever shape the SDK made of it.
          const list = received.get(topics.bulkRaw);
          const seen = list.length;
          assert.deepEqual(await clients[proto].pubsub.publish(PUBSUB, topics.bulkRaw, payload, { metadata: { rawPayload: "true" } }), {});
          await waitFor(`a message on ${topics.bulkRaw}`, () => list.length > seen, 15_000);
          assert.deepEqual(list[seen].data, payload);
        },
      );

      // daprd passes the message's metadata, which includes the pub/sub's
      // name (pkg/runtime/subscription/subscription.go sets
      // msg.Metadata["pubsubName"]), to the app: HTTP headers, or gRPC
      // metadata through invokev1.WithCustomGRPCMetadata
      // (pkg/runtime/subscription/postman/grpc/grpc.go). The SDK hands
      // both to the callback as headers.
      test(
        `${proto} client → ${appProto} app: the delivery names the pub/sub`,
        {},
        async () => {
          const marker = unique("name");
          await clients[proto].pubsub.publish(PUBSUB, topics.json, { marker });
          const msg = await arrival(topics.json, (d) => d?.marker === marker);
          assert.equal(msg.headers?.pubsubname, PUBSUB);
        },
      );

      // daprd: HTTP 404 ERR_PUBSUB_NOT_FOUND, gRPC InvalidArgument
      // (pkg/api/errors/pubsub.go PubSubMetadataError.NotFound).
      if (appProto === "http") {
        test(`${proto} client: publish to a pub/sub that does not exist`, async () => {
          const missing = unique("nopubsub");
          if (proto === "http") {
            // The SDK's HTTP client returns the error rather than throwing.
            const res = await clients.http.pubsub.publish(missing, topics.json, { a: 1 });
            const err = JSON.parse(res.error.message);
            assert.equal(err.status, 404);
            assert.equal(JSON.parse(err.error_msg).errorCode, "ERR_PUBSUB_NOT_FOUND");
          }
          else {
            await assert.rejects(clients.grpc.pubsub.publish(missing, topics.json, { a: 1 }), (e) => e.error?.code === 3);
          }
        });
      }

      test(`${proto} client → ${appProto} app: bulk subscribe gets each message once`, async () => {
        const run = unique("bs");
        for (let n = 0; n < 4; n++) {
          assert.deepEqual(await clients[proto].pubsub.publish(PUBSUB, topics.bulkSub, { run, n, name: `Nº ${n}` }), {});
        }
        await waitFor("the four messages through bulk subscribe", () =>
          received.get(topics.bulkSub).filter((m) => m.data?.run === run).length >= 4,
        15_000);
        const ns = received.get(topics.bulkSub).filter((m) => m.data?.run === run).map((m) => m.data.n);
        assert.deepEqual(ns.sort(), [0, 1, 2, 3]);
      });
    }
  });
}
