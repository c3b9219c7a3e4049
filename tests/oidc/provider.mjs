// A real OpenID provider on loopback for Rampart's OAuth tests:
// oidc-provider (an OpenID Certified implementation) with one confidential
// client and a few test accounts, using the package's development login and
// consent pages (any password is accepted; the login names the account).
//
//   node tests/oidc/provider.mjs REDIRECT_URI [REDIRECT_URI...]
//
// Prints `ISSUER <url>` once it listens on a free port, then serves until
// stdin closes or it gets SIGTERM. Besides the real issuer it serves a
// "mix-up" discovery document at <issuer>/mixup that claims another issuer
// name but points at this provider's endpoints: a client configured with
// that issuer must refuse the ID tokens it gets (their `iss` differs).
import http from "node:http";
import Provider from "oidc-provider";

export const CLIENT_ID = "rampart-test";
export const CLIENT_SECRET = "rampart-test-client-secret-not-for-production";

// Login name → claims. Any other login becomes `<login>@example.org`, verified.
const ACCOUNTS = {
  // Its verified email matches a seeded Rampart account: linked to it.
  "verified-user": { email: "user@example.com", email_verified: true, name: "Uma From Provider" },
  // Its email matches a seeded account but is not verified: must not link.
  "unverified-user": { email: "user@example.com", email_verified: false, name: "Mallory" },
  // An unverified email nobody has: a new account of its own.
  "unverified-new": { email: "fresh-unverified@example.org", email_verified: false, name: "Fresh Person" },
};

const redirectUris = process.argv.slice(2);
if (redirectUris.length === 0) {
  console.error("usage: node provider.mjs REDIRECT_URI [REDIRECT_URI...]");
  process.exit(2);
}

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: redirectUris,
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  pkce: { methods: ["S256"], required: () => true },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  cookies: { keys: ["oidc-test-cookie-key-not-for-production"] },
  async findAccount(_ctx, id) {
    const known = ACCOUNTS[id] ?? { email: `${id}@example.org`, email_verified: true, name: `Person ${id}` };
    return { accountId: id, claims: async () => ({ sub: `sub-${id}`, ...known }) };
  },
});
provider.proxy = false;

const providerCallback = provider.callback();
server.on("request", async (req, res) => {
  if (req.url === "/mixup/.well-known/openid-configuration") {
    const real = await fetch(`${issuer}/.well-known/openid-configuration`).then((r) => r.json());
    res.setHeader("content-type", "application/json");
    // Like a provider without RFC 9207: its responses carry no trusted `iss`.
    res.end(JSON.stringify({ ...real, issuer: `${issuer}/mixup`, authorization_response_iss_parameter_supported: false }));
    return;
  }
  providerCallback(req, res);
});

console.log(`ISSUER ${issuer}`);
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
process.on("SIGTERM", () => process.exit(0));
