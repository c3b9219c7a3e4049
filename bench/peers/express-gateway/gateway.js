// Benchmark peer for bench/gateway.sh: the usual Node stack used as an
// authenticating gateway in front of an upstream, doing the per-request work
// Rampart's gateway does in its simplest form: security headers (helmet), a
// rate limit (express-rate-limit, in memory, high enough never to trip),
// bearer JWT verification (jsonwebtoken), then a keep-alive proxy
// (http-proxy-middleware). One process, one thread, as Node runs by default.
//
//   PORT=4100 UPSTREAM_URL=http://127.0.0.1:18090 \
//   JWT_PUBLIC_KEY_FILE=pub.pem node gateway.js        serve
//   JWT_PRIVATE_KEY_FILE=key.pem node gateway.js --sign print a one-hour token
//
// Keys: JWT_PUBLIC_KEY_FILE / JWT_PRIVATE_KEY_FILE (PEM) with JWT_ALGORITHM
// (default ES256; jsonwebtoken 9 has no EdDSA, so Rampart's default
// algorithm cannot be matched here), or JWT_SECRET for HS256.
// Routes: /public/... goes upstream without the prefix and without a token
// (/public/health -> /health); every other path needs a valid token and
// goes upstream as it is, with X-User-Id set and Authorization removed.
// RATE_LIMIT (default 100000000 per minute) per client IP.

import { readFileSync } from "node:fs";
import { createPrivateKey, createPublicKey } from "node:crypto";
import http from "node:http";
import express from "express";
import rateLimit from "express-rate-limit";
import helmet from "helmet";
import { createProxyMiddleware } from "http-proxy-middleware";
import jwt from "jsonwebtoken";

const secret = process.env.JWT_SECRET;
const algorithm = secret ? "HS256" : process.env.JWT_ALGORITHM || "ES256";

if (process.argv.includes("--sign")) {
  const key = secret ?? createPrivateKey(readFileSync(process.env.JWT_PRIVATE_KEY_FILE));
  process.stdout.write(`${jwt.sign({ sub: "bench-user", role: "user" }, key, { algorithm, expiresIn: "1h" })}\n`);
  process.exit(0);
}

const verifyKey = secret ?? createPublicKey(readFileSync(process.env.JWT_PUBLIC_KEY_FILE));
const upstream = process.env.UPSTREAM_URL;
if (!upstream) throw new Error("UPSTREAM_URL is required");

const app = express();
app.disable("x-powered-by");
app.set("etag", false);
app.use(helmet());
app.use(
  rateLimit({
    windowMs: 60_000,
    limit: Number(process.env.RATE_LIMIT || 100_000_000),
    standardHeaders: "draft-8",
    legacyHeaders: false,
  }),
);

const proxy = createProxyMiddleware({
  target: upstream,
  xfwd: true,
  // A pool of kept-alive upstream connections, as Rampart and nginx keep.
  agent: new http.Agent({ keepAlive: true, maxSockets: 128 }),
});

// Mounted at /public, Express hands the proxy the path below the prefix.
app.use("/public", proxy);

app.use((req, res, next) => {
  const header = req.headers.authorization ?? "";
  const token = header.startsWith("Bearer ") ? header.slice(7) : null;
  if (!token) return res.status(401).json({ error: "missing bearer token" });
  try {
    const claims = jwt.verify(token, verifyKey, { algorithms: [algorithm] });
    delete req.headers.authorization;
    req.headers["x-user-id"] = String(claims.sub);
    return next();
  } catch {
    return res.status(401).json({ error: "invalid token" });
  }
});
app.use(proxy);

const server = app.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});
server.keepAliveTimeout = 75_000;
