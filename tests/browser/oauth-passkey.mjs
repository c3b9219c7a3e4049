// A provider sign-in of a user who has a passkey, in Debian's Chromium with
// its virtual authenticator: the first "Sign in with …" makes the account
// (at the provider's login and consent pages) and a passkey is added on
// /account; after signing out, the next provider sign-in stops at
// /login?mfa=, where the page asks POST /auth/mfa/options what the
// challenge takes and offers only "Use a passkey"; the passkey opens the
// session. Prints "SESSION <cookie value>" for the caller to check the
// session's amr, then BROWSER_OK.
//
//   node tests/browser/oauth-passkey.mjs BASE PROVIDER_LOGIN EXPECTED_EMAIL
// BASE must be http://localhost:<port> (the relying party is "localhost").
import { addPasskeyAuthenticator, launch } from "./launch.mjs";

const [base, providerLogin, expectedEmail] = process.argv.slice(2);

function check(condition, what) {
  if (!condition) throw new Error(what);
}

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const problems = [];
  page.on("console", (message) => {
    const ours = page.url().startsWith(base);
    if (ours && message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(message.text());
    }
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  await addPasskeyAuthenticator(page);

  // "Sign in with …": the provider's login and consent pages, as they come
  // (a provider that remembers the person may skip either), until `done`.
  const atProvider = async (done) => {
    await page.goto(`${base}/login`);
    await page.click("#provider-test");
    for (let step = 0; step < 6; step += 1) {
      const next = await Promise.race([
        page.waitForSelector('input[name="login"]').then(() => "login"),
        page.waitForSelector('input[name="prompt"][value="consent"]', { state: "attached" }).then(() => "consent"),
        done().then(() => "done"),
      ]);
      if (next === "done") return;
      if (next === "login") {
        await page.fill('input[name="login"]', providerLogin);
        await page.fill('input[name="password"]', "any password");
      }
      await page.click('button[type="submit"]');
      await page.waitForLoadState();
    }
    throw new Error(`the provider sign-in did not finish: ${page.url()}`);
  };

  // 1. The account, by the provider; a passkey added to it.
  await atProvider(() => page.waitForURL(`${base}/account`));
  check((await page.textContent("#account-email")) === expectedEmail, "another account is shown");
  await page.fill("#passkey-name", "Provider person's key");
  await page.click("#passkey-add");
  await page.waitForSelector("#passkeys li");
  await page.click("#sign-out");
  await page.waitForURL(`${base}/login`);

  // 2. The provider again: the second step, by passkey only.
  await atProvider(() => page.waitForSelector("#mfa-passkey:not([hidden])"));
  check(!page.url().includes("mfa="), `the token stayed in the address bar: ${page.url()}`);
  check(await page.isHidden("#mfa-code-step"), "a code was asked for, but the user has only a passkey");
  await page.click("#mfa-passkey");
  await page.waitForURL(`${base}/account`);
  check((await page.textContent("#account-email")) === expectedEmail, "another account is shown");

  const session = (await page.context().cookies()).find((cookie) => cookie.name === "rampart_session");
  check(session, "no session cookie");
  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log(`SESSION ${session.value}`);
  console.log("BROWSER_OK");
} finally {
  await browser.close();
}
