// Two-factor sign-in on the pages, in Debian's Chromium under their CSP:
//   node mfa-pages.mjs BASE EMAIL PASSWORD SHOT_ENROL SHOT_SIGNED_IN
// signs in on /login, turns on an authenticator app on /account (reads the
// key the page shows, checks the QR code is drawn, computes the code as an
// app does), sees the ten recovery codes, signs out, signs in again and
// passes the second step on /login with the next step's code. Any script
// error or CSP violation fails. Prints BROWSER_OK on success.
import { createHmac } from "node:crypto";
import { launch } from "./launch.mjs";

const [base, email, password, shotEnrol, shotSignedIn] = process.argv.slice(2);

// RFC 4648 base32, as authenticator apps read the key.
function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of text.replace(/=+$/, "").toUpperCase()) {
    const value = alphabet.indexOf(char);
    if (value < 0) throw new Error(`not base32: ${char}`);
    bits += value.toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

// RFC 6238 with SHA-1, six digits, 30-second steps, `offset` seconds from now.
function totp(key, offset = 0) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor((Date.now() / 1000 + offset) / 30)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const start = mac[mac.length - 1] & 15;
  const number = (mac.readUInt32BE(start) & 0x7fffffff) % 1_000_000;
  return String(number).padStart(6, "0");
}

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));

  const signIn = async () => {
    await page.goto(`${base}/login`);
    await page.fill("#email", email);
    await page.fill("#password", password);
    await page.click("#sign-in");
  };

  await signIn();
  await page.waitForURL(`${base}/account`);
  await page.waitForSelector("#totp-start:not([hidden])");
  await page.click("#totp-start");
  await page.waitForSelector("#totp-enrol:not([hidden])");
  if ((await page.locator("#totp-qr svg").count()) !== 1) throw new Error("no QR code drawn");
  const key = base32((await page.textContent("#totp-secret")).trim());
  await page.screenshot({ path: shotEnrol });
  await page.fill("#totp-code", totp(key));
  await page.click("#totp-confirm");
  await page.waitForSelector("#recovery-panel:not([hidden])");
  const codes = await page.locator("#recovery-codes li").count();
  if (codes !== 10) throw new Error(`${codes} recovery codes shown`);
  await page.click("#recovery-done");
  await page.waitForFunction(() => document.getElementById("mfa-status").textContent.includes("is on"));

  await page.click("#sign-out");
  await page.waitForURL(`${base}/login`);
  await signIn();
  await page.waitForSelector("#mfa-form:not([hidden])");
  if (!(await page.isHidden("#password-form"))) throw new Error("the password form stayed");
  // The confirmation spent this step's code: the app's next one.
  await page.fill("#mfa-code", totp(key, 30));
  await page.click("#mfa-submit");
  await page.waitForURL(`${base}/account`);
  await page.waitForFunction(() => document.getElementById("mfa-status").textContent.includes("is on"));
  await page.screenshot({ path: shotSignedIn });
  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log("BROWSER_OK");
} finally {
  await browser.close();
}
