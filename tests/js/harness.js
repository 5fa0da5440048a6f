// Harness for the JavaScript SDK tests: runs the real `spar` binary.
//
// startSidecar() writes a resources directory (state stores `statestore`
// SQLite, `memstore` in memory, `redisstore` on the local Redis; pub/sub
// `pubsub` in memory; secret store `secretstore` on a local JSON file),
// starts `spar run` on free loopback ports, and waits until
// GET /v1.0/healthz answers 204. The binary is $SPAR_BIN, default
// target/debug/spar under the repository root.
//
// startApp() puts an app served by the SDK's DaprServer (HTTP or gRPC)
// behind a sidecar of its own.
//
// sparTest() wraps a test body so that, when it fails, what the sidecars
// printed while it ran is written to stderr next to the failure.

"use strict";

const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { test } = require("node:test");

const { CommunicationProtocolEnum, DaprClient, DaprServer, LogLevel } = require("@dapr/dapr");

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL_LINES = 200;

// The SDK logs every call at info; keep test output to errors.
const SDK_LOGGER = { level: LogLevel.Error };

// The secrets the local file store is given (nested: "db:user" etc.).
const SECRETS = {
  "api-key": "s3cr3t-✓",
  db: { user: "spär", password: "p@ss wörd" },
  empty: "",
};

// Sidecars still running: killed if this process ends without stopping
// them (a crash, a cancelled run), so none outlives the test file.
const LIVE = new Set();
function killLive() {
  for (const proc of LIVE) {
    proc.kill("SIGKILL");
  }
}
process.on("exit", killLive);
for (const [signal, n] of [["SIGINT", 2], ["SIGTERM", 15]]) {
  process.once(signal, () => {
    killLive();
    process.exit(128 + n);
  });
}

function sparBin() {
  const p = process.env.SPAR_BIN || path.join(REPO_ROOT, "target", "debug", "spar");
  return path.isAbsolute(p) ? p : path.join(REPO_ROOT, p);
}

/** A unique name for keys, topics and app ids: `${prefix}-<12 hex>`. */
function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString("hex")}`;
}

/** n distinct free loopback ports (all held open while choosing). */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => {
        s.once("error", reject);
        s.listen(0, "127.0.0.1", resolve);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function componentYaml(name, type, metadata = {}) {
  const lines = [
    "apiVersion: dapr.io/v1alpha1",
    "kind: Component",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    `  type: ${type}`,
    "  version: v1",
  ];
  const entries = Object.entries(metadata);
  if (entries.length === 0) {
    lines.push("  metadata: []");
  }
  else {
    lines.push("  metadata:");
    for (const [k, v] of entries) {
      // A JSON string is a valid YAML scalar, whatever the path holds.
      lines.push(`  - name: ${k}`, `    value: ${JSON.stringify(String(v))}`);
    }
  }
  return lines.join("\n") + "\n";
}

function tail(file, from = 0) {
  let text;
  try {
    const buf = fs.readFileSync(file);
    text = buf.subarray(Math.min(from, buf.length)).toString("utf8");
  }
  catch (e) {
    return `<cannot read ${file}: ${e.message}>`;
  }
  const lines = text.split("\n");
  if (lines.length > LOG_TAIL_LINES) {
    return [`... (${lines.length - LOG_TAIL_LINES} earlier lines cut)`, ...lines.slice(-LOG_TAIL_LINES)].join("\n");
  }
  return text;
}

function fileSize(file) {
  try {
    return fs.statSync(file).size;
  }
  catch {
    return 0;
  }
}

/** GET url; resolves to the status code, or null when nothing answered. */
function httpStatus(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(null));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** promise, or a rejection after ms (the timer does not hold the process). */
function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

class Sidecar {
  constructor(fields) {
    Object.assign(this, fields);
    this.exit = null; // { code, signal } once the process has ended
    LIVE.add(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => {
        LIVE.delete(this.proc);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  logOffsets() {
    return [fileSize(this.stdoutPath), fileSize(this.stderrPath)];
  }

  /** What the sidecar printed (from the given offsets on). */
  output(since = [0, 0]) {
    const status = this.exit ? `EXITED (code ${this.exit.code}, signal ${this.exit.signal})` : "running";
    return [
      `$ ${this.argv.join(" ")}`,
      `(pid ${this.proc.pid}, ${status})`,
      `--- stdout (${this.stdoutPath}) ---`,
      tail(this.stdoutPath, since[0]),
      `--- stderr (${this.stderrPath}) ---`,
      tail(this.stderrPath, since[1]),
    ].join("\n");
  }

  /** A DaprClient of the SDK on this sidecar's HTTP or gRPC port. */
  client(protocol = CommunicationProtocolEnum.HTTP, options = {}) {
    const grpc = protocol === CommunicationProtocolEnum.GRPC;
    return new DaprClient({
      daprHost: "127.0.0.1",
      daprPort: String(grpc ? this.grpcPort : this.httpPort),
      communicationProtocol: protocol,
      logger: SDK_LOGGER,
      ...options,
    });
  }

  /** SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; resolves once it exited. */
  async stop() {
    if (this.exit) {
      return this.exit;
    }
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
    try {
      return await this.exited;
    }
    finally {
      clearTimeout(timer);
      fs.rmSync(this.workdir, { recursive: true, force: true });
    }
  }
}

/**
 * Starts spar with the test components; resolves once it is healthy.
 * options.args: extra command-line arguments (e.g. --app-port);
 * options.resources: extra YAML documents, each written to a file of its own;
 * options.env: extra environment variables (e.g. DAPR_API_TOKEN).
 */
async function startSidecar(options = {}) {
  const binary = sparBin();
  if (!fs.existsSync(binary)) {
    throw new Error(`spar binary not found at ${binary}: build it (cargo build -p spar) or point SPAR_BIN at it`);
  }
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), "spar-js-"));
  const resources = path.join(workdir, "resources");
  fs.mkdirSync(resources);
  const secretsFile = path.join(workdir, "secrets.json");
  fs.writeFileSync(secretsFile, JSON.stringify(SECRETS));
  const files = {
    "statestore.yaml": componentYaml("statestore", "state.sqlite", {
      connectionString: path.join(workdir, "state.db"),
    }),
    "memstore.yaml": componentYaml("memstore", "state.in-memory"),
    // The machine's shared Redis: keys carry the unique app id as prefix,
    // and a default TTL so no run leaves them behind for good.
    "redisstore.yaml": componentYaml("redisstore", "state.redis", { redisHost: "127.0.0.1:6379", ttlInSeconds: 3600 }),
    "pubsub.yaml": componentYaml("pubsub", "pubsub.in-memory"),
    "secretstore.yaml": componentYaml("secretstore", "secretstores.local.file", { secretsFile }),
  };
  (options.resources ?? []).forEach((doc, i) => {
    files[`extra-${i}.yaml`] = doc;
  });
  for (const [name, doc] of Object.entries(files)) {
    fs.writeFileSync(path.join(resources, name), doc);
  }

  const [httpPort, grpcPort, metricsPort] = await freePorts(3);
  const appId = options.appId ?? unique("jstest");
  const argv = [
    binary,
    "run",
    "--app-id", appId,
    "--dapr-http-port", String(httpPort),
    "--dapr-grpc-port", String(grpcPort),
    "--metrics-port", String(metricsPort),
    // Loopback only: also keeps mDNS announcements off the network.
    "--dapr-listen-addresses", "127.0.0.1",
    "--resources-path", resources,
    ...(options.args ?? []),
  ];
  const stdoutPath = path.join(workdir, "spar.stdout.log");
  const stderrPath = path.join(workdir, "spar.stderr.log");
  const out = fs.openSync(stdoutPath, "w");
  const err = fs.openSync(stderrPath, "w");
  const proc = spawn(argv[0], argv.slice(1), {
    cwd: workdir,
    env: { ...process.env, RUST_BACKTRACE: "1", ...(options.env ?? {}) },
    stdio: ["ignore", out, err],
  });
  fs.closeSync(out);
  fs.closeSync(err);
  const sc = new Sidecar({ appId, httpPort, grpcPort, metricsPort, workdir, resources, argv, stdoutPath, stderrPath, proc });

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let last = null;
  for (;;) {
    if (sc.exit) {
      throw new Error(`spar exited during start-up (code ${sc.exit.code})\n${sc.output()}`);
    }
    last = await httpStatus(`${sc.httpUrl}/v1.0/healthz`);
    if (last === 204) {
      return sc;
    }
    if (Date.now() >= deadline) {
      const log = sc.output();
      await sc.stop();
      throw new Error(
        `spar did not answer 204 on GET /v1.0/healthz within ${STARTUP_TIMEOUT_MS / 1000}s ` +
          `(last answer: ${last ?? "no connection"})\n${log}`,
      );
    }
    await sleep(100);
  }
}

/**
 * An app served by the SDK's DaprServer (HTTP or gRPC) behind its own
 * sidecar. setup(server) registers subscriptions and methods before the
 * server starts, so the sidecar's first look at the app sees them. The
 * sidecar starts first (with --app-port), then the server, whose client
 * waits for the sidecar as an app's would. stop() ends both.
 */
async function startApp({ protocol = CommunicationProtocolEnum.HTTP, setup, args = [] } = {}) {
  const grpc = protocol === CommunicationProtocolEnum.GRPC;
  const [appPort] = await freePorts(1);
  const sc = await startSidecar({
    args: ["--app-port", String(appPort), ...(grpc ? ["--app-protocol", "grpc"] : []), ...args],
  });
  let server;
  try {
    server = new DaprServer({
      serverHost: "127.0.0.1",
      serverPort: String(appPort),
      communicationProtocol: protocol,
      logger: SDK_LOGGER,
      clientOptions: {
        daprHost: "127.0.0.1",
        daprPort: String(grpc ? sc.grpcPort : sc.httpPort),
        communicationProtocol: protocol,
        logger: SDK_LOGGER,
      },
    });
    if (setup) {
      await setup(server);
    }
    await server.start();
  }
  catch (e) {
    const log = sc.output();
    await sc.stop();
    e.message += `\n${log}`;
    throw e;
  }
  return {
    server,
    sc,
    // The sidecar first: an HTTP/2 server's close() waits for the
    // sidecar's open connections to it.
    async stop() {
      await sc.stop();
      await withTimeout(server.stop(), 5000).catch(() => {});
      await withTimeout(server.client.stop(), 5000).catch(() => {});
    },
  };
}

/**
 * test() whose body prints the sidecars' output on failure (todo tests
 * excepted). `sidecars` is
 * a function returning the sidecars to show (they are made in before()).
 * A test gets a 30 s timeout unless it sets its own.
 */
function sparTest(sidecars) {
  // Not for todo tests: their failures are expected and reported as such.
  const wrap = (fn, quiet) => async (t) => {
    const list = sidecars().filter(Boolean);
    const marks = list.map((sc) => sc.logOffsets());
    try {
      await fn(t);
    }
    catch (e) {
      for (const [i, sc] of (quiet ? [] : list).entries()) {
        process.stderr.write(`\n==== spar sidecar output (${t.name}) ====\n${sc.output(marks[i])}\n`);
      }
      throw e;
    }
  };
  const def = (name, opts, fn) => {
    if (typeof opts === "function") {
      fn = opts;
      opts = {};
    }
    return test(name, { timeout: 30_000, ...opts }, wrap(fn, Boolean(opts.todo)));
  };
  return def;
}

/** Polls cond() every 50 ms until it is truthy; throws after timeoutMs. */
async function waitFor(what, cond, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) {
      return v;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(50);
  }
}

/**
 * Both SDK clients, for tests that run once per protocol:
 * [["http", HTTP], ["grpc", GRPC]].
 */
const PROTOCOLS = [
  ["http", CommunicationProtocolEnum.HTTP],
  ["grpc", CommunicationProtocolEnum.GRPC],
];

module.exports = {
  PROTOCOLS,
  SDK_LOGGER,
  SECRETS,
  componentYaml,
  freePorts,
  httpStatus,
  sleep,
  sparBin,
  sparTest,
  startApp,
  startSidecar,
  unique,
  waitFor,
};
