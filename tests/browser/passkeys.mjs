// Passkeys in Debian's Chromium with its virtual authenticator (DevTools
// protocol WebAuthn.addVirtualAuthenticator: CTAP2, resident keys, user
// verification), real ceremonies against the server, under the pages' CSP:
//   node passkeys.mjs BASE EMAIL PASSWORD SHOT_ACCOUNT SHOT_SECOND_STEP
// BASE must be http://localhost:<port> (the relying party is "localhost").
// 1. signs in with the password, adds a passkey on /account;
// 2. signs out, signs in on /login with "Sign in with a passkey";
// 3. through the API from the page: a passwordless sign-in for tokens has
//    amr ["hwk","mfa"]; the same answer again, or for another ceremony, is
//    refused (401);
// 4. a password sign-in asks for the second step and "Use a passkey" ends
//    it; through the API the tokens then have amr ["pwd","hwk","mfa"], and
//    POST /auth/mfa/options replaces the challenge's passkey options;
// 5. removes the passkey on /account: the authenticator's credential no
//    longer signs in (401).
// Any script error or CSP violation fails. Prints BROWSER_OK on success.
import { addPasskeyAuthenticator, launch } from "./launch.mjs";

const [base, email, password, shotAccount, shotSecondStep] = process.argv.slice(2);

function check(condition, what) {
  if (!condition) throw new Error(what);
}

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  if (process.env.BROWSER_DEBUG) page.on("console", (message) => console.error(`console: ${message.text()}`));

  const { devtools, authenticatorId } = await addPasskeyAuthenticator(page);

  const passwordSignIn = async () => {
    await page.goto(`${base}/login`);
    await page.fill("#email", email);
    await page.fill("#password", password);
    await page.click("#sign-in");
  };
  // Waits for /account, or fails with what /login said.
  const landed = async (what) => {
    await page.waitForURL(`${base}/account`, { timeout: 15000 }).catch(async () => {
      const said = await page.textContent("#message").catch(() => "");
      throw new Error(`${what} did not reach /account; the page said: ${said} ${problems.join(" | ")}`);
    });
  };
  const signOut = async () => {
    await page.click("#sign-out");
    await page.waitForURL(`${base}/login`);
  };

  // 1. A passkey added on /account.
  await passwordSignIn();
  await page.waitForURL(`${base}/account`);
  await page.waitForSelector("#passkey-form");
  await page.fill("#passkey-name", "Test laptop");
  await page.click("#passkey-add");
  await page
    .waitForFunction(
      () => document.querySelector("#passkeys li") || document.getElementById("passkey-message").textContent,
      null,
      { timeout: 15000 },
    )
    .catch((error) => {
      throw new Error(`adding a passkey: ${error.message}; page said: ${problems.join(" | ")}`);
    });
  check(!(await page.textContent("#passkey-message")), `adding: ${await page.textContent("#passkey-message")}`);
  check((await page.textContent("#passkeys li .passkey-name")) === "Test laptop", "the passkey is not listed");
  const { credentials } = await devtools.send("WebAuthn.getCredentials", { authenticatorId });
  check(credentials.length === 1 && credentials[0].isResidentCredential, "no discoverable credential was made");
  await page.waitForFunction(() => document.getElementById("mfa-status").textContent.includes("passkeys"));
  await page.screenshot({ path: shotAccount });

  // 2. Passwordless on /login.
  await signOut();
  await page.waitForSelector("#passkey-option:not([hidden])");
  await page.click("#passkey-sign-in");
  await landed("the passwordless sign-in");
  await page.waitForSelector("#passkeys li");

  // 3. The API from the page: tokens, amr, replays.
  const api = await page.evaluate(async () => {
    const post = async (path, body) => {
      const response = await fetch(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: await response.json().catch(() => null) };
    };
    const amr = (token) => JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).amr;
    const started = await post("/auth/passkey/start", {});
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(started.body);
    const credential = (await navigator.credentials.get({ publicKey })).toJSON();
    const signedIn = await post("/auth/passkey/finish", { challenge_id: started.body.challenge_id, credential });
    const again = await post("/auth/passkey/finish", { challenge_id: started.body.challenge_id, credential });
    const other = await post("/auth/passkey/start", {});
    const replayed = await post("/auth/passkey/finish", { challenge_id: other.body.challenge_id, credential });
    return {
      start: started.status,
      userVerification: started.body.userVerification,
      status: signedIn.status,
      amr: signedIn.body && signedIn.body.access_token ? amr(signedIn.body.access_token) : null,
      again: again.status,
      replayed: replayed.status,
    };
  });
  check(api.start === 200 && api.userVerification === "required", `start: ${JSON.stringify(api)}`);
  check(api.status === 200 && JSON.stringify(api.amr) === '["hwk","mfa"]', `passwordless: ${JSON.stringify(api)}`);
  check(api.again === 401, `the same ceremony twice: ${api.again}`);
  check(api.replayed === 401, `an answer replayed for another ceremony: ${api.replayed}`);

  // 4. The passkey as the second step after a password.
  await signOut();
  await passwordSignIn();
  await page.waitForSelector("#mfa-form:not([hidden])");
  check(await page.isHidden("#mfa-code-step"), "a code was asked for, but the user has only a passkey");
  await page.waitForSelector("#mfa-passkey:not([hidden])");
  await page.screenshot({ path: shotSecondStep });
  await page.click("#mfa-passkey");
  await landed("the passkey second step");
  const second = await page.evaluate(async ([email, password]) => {
    const post = async (path, body) => {
      const response = await fetch(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: await response.json().catch(() => null) };
    };
    const sign = async (options) => {
      const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
      return (await navigator.credentials.get({ publicKey })).toJSON();
    };
    const login = await post("/auth/login", { email, password });
    // New options for the challenge (as a page holding only the token asks):
    // an answer to the first ones no longer passes.
    const renewed = await post("/auth/mfa/options", { mfa_token: login.body.mfa_token });
    const stale = await post("/auth/mfa", { mfa_token: login.body.mfa_token, passkey: await sign(login.body.passkey) });
    const passkey = await sign(renewed.body.passkey);
    const done = await post("/auth/mfa", { mfa_token: login.body.mfa_token, passkey });
    const token = done.body && done.body.access_token;
    return {
      renewed: renewed.status,
      renewedMethods: renewed.body.methods,
      stale: stale.status,
      methods: login.body.methods,
      status: done.status,
      amr: token ? JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).amr : null,
      again: (await post("/auth/mfa", { mfa_token: login.body.mfa_token, passkey })).status,
    };
  }, [email, password]);
  check(JSON.stringify(second.methods) === '["passkey"]', `methods: ${JSON.stringify(second)}`);
  check(second.renewed === 200 && JSON.stringify(second.renewedMethods) === '["passkey"]', `options: ${JSON.stringify(second)}`);
  check(second.stale === 401, `an answer to replaced options: ${second.stale}`);
  check(second.status === 200 && JSON.stringify(second.amr) === '["pwd","hwk","mfa"]', `second step: ${JSON.stringify(second)}`);
  check(second.again === 401, `a spent challenge: ${second.again}`);

  // 5. Removed on /account: the authenticator's copy no longer signs in.
  await page.click("#passkeys li .remove-passkey");
  await page.waitForSelector("#no-passkeys:not([hidden])");
  const removed = await page.evaluate(async () => {
    const started = await (await fetch("/auth/passkey/start", { method: "POST" })).json();
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(started);
    const credential = (await navigator.credentials.get({ publicKey })).toJSON();
    const response = await fetch("/auth/passkey/finish", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ challenge_id: started.challenge_id, credential }),
    });
    return response.status;
  });
  check(removed === 401, `a removed passkey signed in: ${removed}`);

  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log("BROWSER_OK");
} finally {
  await browser.close();
}
