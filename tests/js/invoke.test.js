// Service invocation through the JavaScript SDK: client.invoker.invoke
// (HTTP and gRPC clients) calls methods an app registered with the SDK's
// DaprServer (server.invoker.listen), served over HTTP or gRPC. The client
// calls the app's own sidecar by its app id (self-invocation, as daprd
// allows).

"use strict";

const assert = require("node:assert/strict");
const { after, before, describe } = require("node:test");

const { HttpMethod } = require("@dapr/dapr");

const { PROTOCOLS, sparTest, startApp } = require("./harness");

const VERBS = [HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE];

// The SDK's gRPC server answers OnInvoke, which spar calls as daprd does
// (method, data, content type, http_extension).

for (const [appProto, appProtocol] of PROTOCOLS) {
  describe(`invoke a ${appProto} app`, () => {
    const clients = {};
    let app;
    before(async () => {
      app = await startApp({
        protocol: appProtocol,
        setup: async (server) => {
          for (const method of VERBS) {
            // Answers what it got, so the test sees what reached the app.
            await server.invoker.listen(
              "orders/echo",
              async ({ body, query, metadata, headers }) => ({
                verb: method,
                body,
                query,
                contentType: metadata?.contentType,
                note: headers?.["x-order-note"],
              }),
              { method },
            );
          }
        },
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
    const gap = {};

    for (const [proto] of PROTOCOLS) {
      for (const verb of VERBS) {
        // GET and DELETE without a body, as apps call them.
        const withBody = verb === HttpMethod.POST || verb === HttpMethod.PUT;
        const title = `${verb.toUpperCase()}${withBody ? " with a JSON body" : ""}`;
        test(`${proto} client → ${appProto} app: ${title}`, gap, async () => {
          const order = { id: 7, customer: "Zoë", lines: [{ sku: "☕", qty: 2 }], note: "", gift: null };
          const got = await clients[proto].invoker.invoke(app.sc.appId, "orders/echo", verb, withBody ? order : undefined);
          assert.equal(got.verb, verb);
          if (withBody) {
            assert.deepEqual(JSON.parse(got.body), order);
            assert.equal(got.contentType, "application/json");
          }
        });
      }

      test(`${proto} client → ${appProto} app: a method the app does not serve`, gap, async () => {
        const call = () => clients[proto].invoker.invoke(app.sc.appId, "no/such/method", HttpMethod.POST, { a: 1 });
        if (appProto === "http") {
          // The app's own answer (Express: 404) comes back through the
          // sidecar: the HTTP client throws it, the gRPC client fails too.
          if (proto === "http") {
            await assert.rejects(call(), (e) => JSON.parse(e.message).status === 404);
          }
          else {
            await assert.rejects(call());
          }
        }
        else if (proto === "http") {
          // The SDK's gRPC server answers an empty InvokeResponse (OK);
          // daprd passes it on as an empty 200.
          assert.equal(await call(), "");
        }
        else {
          // … which the SDK's gRPC client cannot parse as JSON.
          await assert.rejects(call(), /COULD_NOT_PARSE_RESULT/);
        }
      });
    }

    // Only the HTTP client lets a caller add headers and a query string
    // (the method name is put into the URL as it is).
    test(`http client → ${appProto} app: query string and headers`, gap, async () => {
      const got = await clients.http.invoker.invoke(
        app.sc.appId,
        "orders/echo?city=Z%C3%BCrich&page=2",
        HttpMethod.POST,
        "plain text body ✓",
        { headers: { "x-order-note": "rush delivery" } },
      );
      assert.equal(got.verb, HttpMethod.POST);
      assert.equal(got.contentType, "text/plain");
      if (appProto === "http") {
        // The HTTP server hands the callback the request's URL and headers.
        assert.equal(got.query, "/orders/echo?city=Z%C3%BCrich&page=2");
        assert.equal(got.note, "rush delivery");
        assert.equal(JSON.parse(got.body), "plain text body ✓");
      }
      else {
        // The gRPC server hands it http_extension.querystring and the data.
        assert.equal(got.query, "city=Z%C3%BCrich&page=2");
        assert.equal(got.body, "plain text body ✓");
      }
    });
  });
}
