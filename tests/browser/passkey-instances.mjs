// Passkey ceremonies begun on one instance and finished on another (both on
// one database, one origin as behind a load balancer), with Chromium's
// virtual authenticator:
//   node passkey-instances.mjs BASE_A BASE_B TOKEN_A TOKEN_B
// The page is instance A's (its origin is the relying party's); A starts a
// registration and a sign-in, B finishes both. Prints a JSON line of what
// B answered, then BROWSER_OK.
import { addPasskeyAuthenticator, launch } from "./launch.mjs";

const [baseA, baseB, tokenA, tokenB] = process.argv.slice(2);

async function post(url, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json().catch(() => null) };
}

const browser = await launch();
try {
  const page = await browser.newPage();
  await addPasskeyAuthenticator(page);
  await page.goto(`${baseA}/login`);

  const started = await post(`${baseA}/api/profile/passkeys/register/start`, tokenA, { name: "Shared" });
  if (started.status !== 200) throw new Error(`registration start on A: ${JSON.stringify(started)}`);
  const registration = await page.evaluate(async (options) => {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    return (await navigator.credentials.create({ publicKey })).toJSON();
  }, started.body);
  const registered = await post(`${baseB}/api/profile/passkeys/register/finish`, tokenB, registration);

  const signIn = await post(`${baseA}/auth/passkey/start`, null, {});
  const assertion = await page.evaluate(async (options) => {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    return (await navigator.credentials.get({ publicKey })).toJSON();
  }, signIn.body);
  const signedIn = await post(`${baseB}/auth/passkey/finish`, null, {
    challenge_id: signIn.body.challenge_id,
    credential: assertion,
  });
  console.log(JSON.stringify({
    registered: registered.status,
    name: registered.body && registered.body.name,
    signed_in: signedIn.status,
    access_token: signedIn.body && signedIn.body.access_token,
  }));
  console.log("BROWSER_OK");
} finally {
  await browser.close();
}
