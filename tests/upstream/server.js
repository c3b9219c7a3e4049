// A stand-in upstream API for Rampart's protect-mode tests (gateway and
// forward auth). One process, loopback only, no state worth keeping.
//
//   node tests/upstream/server.js --port 0        (or PORT=0; 0 picks a free port)
//   TLS_CERT_FILE=cert.pem TLS_KEY_FILE=key.pem …   serves https instead
//
// Prints one JSON line, {"listening": <port>}, once it accepts connections,
// and exits when its stdin closes, so a test's dropped child never lingers
// (pass --no-stdin-exit to run it by hand in the background).
//
// Endpoints (any method unless named):
//   /sse?count=N&interval_ms=M   text/event-stream: N events (default 3), the
//                                first at once, then one every M ms (default 100)
//   /slow?ms=N                   response headers only after N ms
//   /stall-body?ms=N             headers and one chunk at once, N ms of nothing, then the end
//   /status/<code>               that status with {"status": code} (no body for 204/304)
//   /set-cookies                 Set-Cookie rampart_session=evil, rampart_x=1, app_session=ok;
//                                Server, X-Powered-By, Keep-Alive and a hop-by-hop
//                                header named in Connection (X-Hop), X-Frame-Options SAMEORIGIN
//   /verify                      checks the assertion header (ASSERTION_HEADER, default
//                                X-Rampart-Assertion) with jose against JWKS_URL:
//                                typ rampart-assertion+jwt, iss ASSERTION_ISSUER and aud
//                                ASSERTION_AUDIENCE when set. 200 {valid, header, claims} or
//                                401 {valid: false, error}
//   /ws                          websocket echo (text and binary); ?hello=1 first sends the
//                                handshake {method, url, headers} as a text message.
//                                Without an upgrade: 426
//   /healthz                     200, or 503 after POST /control/health {"up": false}
//   /control/health              GET {up, checks}; POST {"up": bool}
//   /control/assertion           POST {"jwks_url", "issuer", "audience", "header"}: the
//                                same settings as the env variables, for a test that learns
//                                Rampart's address only after starting this upstream
//   /control/canned              POST {"path", "status", "headers": {…}, "body"}: from then on that
//                                exact path (any method and query) answers so, e.g. a stand-in
//                                for Rampart's /auth/forward; {"path", "status": null} removes it
//   /control/requests            GET {count, recent: [{method, url, headers}]} of the requests
//                                served (not /control/ ones), the last 100; DELETE clears
//   anything else                200 echo: {method, url (req.url, byte for byte), path (url
//                                before "?"), query (raw string after "?", or null),
//                                headers (lower-case names; a repeated header is an array),
//                                body_length, body_sha256, body_text (UTF-8, bodies up to
//                                64 KiB), remote_port}. The body is hashed as it streams.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { WebSocketServer } from "ws";

const args = process.argv.slice(2);
const portArg = args.indexOf("--port");
const port = Number(portArg >= 0 ? args[portArg + 1] : (process.env.PORT ?? 0));

const assertion = {
  header: (process.env.ASSERTION_HEADER || "X-Rampart-Assertion").toLowerCase(),
  jwksUrl: process.env.JWKS_URL || "",
  issuer: process.env.ASSERTION_ISSUER || undefined,
  audience: process.env.ASSERTION_AUDIENCE || undefined,
  jwks: null,
};
const health = { up: true, checks: 0 };
const served = { count: 0, recent: [] };
const canned = new Map();

/** Header names lower-cased; a header sent more than once becomes an array. */
function headerMap(rawHeaders) {
  const headers = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    if (!(name in headers)) headers[name] = value;
    else if (Array.isArray(headers[name])) headers[name].push(value);
    else headers[name] = [headers[name], value];
  }
  return headers;
}

function splitUrl(url) {
  const q = url.indexOf("?");
  return q < 0 ? { path: url, query: null } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

function sendJson(res, status, body, extraHeaders = {}) {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { "content-type": "application/json", "content-length": bytes.length, ...extraHeaders });
  res.end(bytes);
}

/** Reads the whole body as it streams: length, SHA-256 and (when small) the text. */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    const kept = [];
    let length = 0;
    req.on("data", (chunk) => {
      hash.update(chunk);
      length += chunk.length;
      if (length <= 65536) kept.push(chunk);
    });
    req.on("end", () =>
      resolve({ length, sha256: hash.digest("hex"), text: length <= 65536 ? Buffer.concat(kept).toString("utf8") : null }),
    );
    req.on("error", reject);
  });
}

async function readJson(req) {
  const body = await readBody(req);
  return body.text ? JSON.parse(body.text) : {};
}

const numberParam = (query, name, fallback) => {
  const value = Number(new URLSearchParams(query ?? "").get(name));
  return Number.isFinite(value) && value >= 0 ? value : fallback;
};

async function verifyAssertion(req) {
  const token = req.headers[assertion.header];
  if (!token) return { status: 401, body: { valid: false, error: `no ${assertion.header} header` } };
  if (!assertion.jwksUrl) return { status: 401, body: { valid: false, error: "JWKS_URL is not set" } };
  assertion.jwks ??= createRemoteJWKSet(new URL(assertion.jwksUrl));
  try {
    const { payload, protectedHeader } = await jwtVerify(token, assertion.jwks, {
      typ: "rampart-assertion+jwt",
      issuer: assertion.issuer,
      audience: assertion.audience,
      // Asymmetric only: an assertion signed with a shared secret is never valid.
      algorithms: ["EdDSA", "Ed25519", "ES256", "RS256"],
    });
    return { status: 200, body: { valid: true, header: protectedHeader, claims: payload } };
  } catch (error) {
    return { status: 401, body: { valid: false, error: `${error.code ?? error.name}: ${error.message}` } };
  }
}

async function control(req, res, path) {
  if (path === "/control/health") {
    if (req.method === "POST") health.up = (await readJson(req)).up !== false;
    else req.resume();
    return sendJson(res, 200, health);
  }
  if (path === "/control/assertion" && req.method === "POST") {
    const settings = await readJson(req);
    if ("jwks_url" in settings) {
      assertion.jwksUrl = settings.jwks_url;
      assertion.jwks = null;
    }
    if ("issuer" in settings) assertion.issuer = settings.issuer || undefined;
    if ("audience" in settings) assertion.audience = settings.audience || undefined;
    if (settings.header) assertion.header = settings.header.toLowerCase();
    return sendJson(res, 200, { ok: true });
  }
  if (path === "/control/canned" && req.method === "POST") {
    const response = await readJson(req);
    if (response.status == null) canned.delete(response.path);
    else canned.set(response.path, response);
    return sendJson(res, 200, { ok: true });
  }
  if (path === "/control/requests") {
    req.resume();
    if (req.method === "DELETE") {
      served.count = 0;
      served.recent = [];
    }
    return sendJson(res, 200, served);
  }
  req.resume();
  return sendJson(res, 404, { error: "unknown control endpoint" });
}

async function handle(req, res) {
  const { path, query } = splitUrl(req.url);
  if (path.startsWith("/control/")) return control(req, res, path);

  served.count += 1;
  served.recent.push({ method: req.method, url: req.url, headers: headerMap(req.rawHeaders) });
  if (served.recent.length > 100) served.recent.shift();

  const cannedResponse = canned.get(path);
  if (cannedResponse) {
    req.resume();
    res.writeHead(cannedResponse.status, cannedResponse.headers ?? {});
    return res.end(cannedResponse.body ?? "");
  }
  if (path === "/sse") {
    req.resume();
    const count = numberParam(query, "count", 3);
    const interval = numberParam(query, "interval_ms", 100);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.flushHeaders();
    let sent = 0;
    const send = () => {
      res.write(`id: ${sent}\ndata: ${JSON.stringify({ n: sent, t: Date.now() })}\n\n`);
      sent += 1;
      if (sent >= count) {
        clearInterval(timer);
        res.end();
      }
    };
    const timer = setInterval(send, interval);
    res.on("close", () => clearInterval(timer));
    if (count === 0) {
      clearInterval(timer);
      res.end();
    } else send();
    return;
  }
  if (path === "/slow") {
    req.resume();
    const timer = setTimeout(() => sendJson(res, 200, { slow_ms: numberParam(query, "ms", 1000) }), numberParam(query, "ms", 1000));
    res.on("close", () => clearTimeout(timer));
    return;
  }
  if (path === "/stall-body") {
    req.resume();
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("first chunk\n");
    const timer = setTimeout(() => res.end("last chunk\n"), numberParam(query, "ms", 1000));
    res.on("close", () => clearTimeout(timer));
    return;
  }
  const status = /^\/status\/(\d{3})$/.exec(path);
  if (status) {
    req.resume();
    const code = Number(status[1]);
    if (code < 200 || code > 599) return sendJson(res, 400, { error: "status must be 200-599" });
    if (code === 204 || code === 304) {
      res.writeHead(code);
      return res.end();
    }
    return sendJson(res, code, { status: code });
  }
  if (path === "/set-cookies") {
    req.resume();
    res.setHeader("set-cookie", ["rampart_session=evil; Path=/; HttpOnly", "rampart_x=1; Path=/", "app_session=ok; Path=/; HttpOnly"]);
    res.setHeader("server", "upstream-server");
    res.setHeader("x-powered-by", "Express");
    res.setHeader("keep-alive", "timeout=5");
    // A hop-by-hop header of our own, named in Connection: a proxy must drop both.
    res.setHeader("connection", "x-hop");
    res.setHeader("x-hop", "1");
    res.setHeader("x-frame-options", "SAMEORIGIN");
    return sendJson(res, 200, { cookies: "set" });
  }
  if (path === "/verify") {
    req.resume();
    const { status: code, body } = await verifyAssertion(req);
    return sendJson(res, code, body);
  }
  if (path === "/ws") {
    req.resume();
    return sendJson(res, 426, { error: "websocket upgrade required" }, { upgrade: "websocket" });
  }
  if (path === "/healthz") {
    req.resume();
    health.checks += 1;
    return sendJson(res, health.up ? 200 : 503, { up: health.up });
  }

  const body = await readBody(req);
  return sendJson(res, 200, {
    method: req.method,
    url: req.url,
    path,
    query,
    headers: headerMap(req.rawHeaders),
    body_length: body.length,
    body_sha256: body.sha256,
    body_text: body.text,
    remote_port: req.socket.remotePort,
  });
}

const onRequest = (req, res) => {
  handle(req, res).catch((error) => {
    if (!res.headersSent) sendJson(res, 500, { error: String(error) });
    else res.destroy();
  });
};
// TLS_CERT_FILE and TLS_KEY_FILE (PEM) make it an https upstream.
const server = process.env.TLS_CERT_FILE
  ? https.createServer(
      { cert: readFileSync(process.env.TLS_CERT_FILE), key: readFileSync(process.env.TLS_KEY_FILE) },
      onRequest,
    )
  : http.createServer(onRequest);
// Longer than a proxy's pool idle time, so a kept-alive connection is not
// closed under a request the proxy is sending on it.
server.keepAliveTimeout = Number(process.env.KEEP_ALIVE_MS || 75_000);
server.headersTimeout = server.keepAliveTimeout + 1000;

const sockets = new WebSocketServer({ noServer: true });
server.on("upgrade", (req, socket, head) => {
  const { path, query } = splitUrl(req.url);
  if (path !== "/ws") {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  sockets.handleUpgrade(req, socket, head, (ws) => {
    if (new URLSearchParams(query ?? "").get("hello") === "1") {
      ws.send(JSON.stringify({ method: req.method, url: req.url, headers: headerMap(req.rawHeaders) }));
    }
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});

if (!args.includes("--no-stdin-exit")) {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
  process.stdin.resume();
}
