// The "API keys" card of /account in Debian's Chromium: signs in on /login,
// is refused a key without a name (the problem shown by the form), creates
// one with posts:read and a last day, reads the secret shown once, copies
// it, uses it from here as a bearer credential, checks a reload no longer
// shows it, revokes it with its row's button and checks it is refused. Any
// script error or CSP violation fails. Prints BROWSER_OK on success.
//
//   node tests/browser/account-keys.mjs BASE_URL EMAIL PASSWORD SCREENSHOT
import { launch } from "./launch.mjs";

const [base, email, password, screenshot] = process.argv.slice(2);

function check(condition, what) {
  if (!condition) throw new Error(what);
}

async function withKey(path, key) {
  const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: response.status, headers: response.headers, body };
}

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 1000 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await context.newPage();
  const problems = [];
  // Script errors and CSP violations fail the test; an HTTP status the page
  // expects (the refused key below, the browser's favicon 404) does not.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));

  // Signed out, /account sends the browser to /login, which comes back.
  await page.goto(`${base}/account`);
  await page.waitForURL(/\/login/);
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#sign-in");
  await page.waitForURL(`${base}/account`);
  await page.waitForSelector("#no-keys:not([hidden])");

  // A key without a name: the API's problem is shown beside the form.
  await page.check('#key-scopes input[value="posts:read"]');
  await page.click("#create-key");
  await page.waitForFunction(() => document.getElementById("key-form-message").textContent.trim() !== "");
  const nameError = await page.textContent('.field-error[data-field="name"]');
  check(nameError.startsWith("name: "), `the name's error reads ${JSON.stringify(nameError)}`);
  check(await page.isHidden("#new-key-panel"), "a refused key showed a secret");

  // A key that may read posts, until the end of a day 30 days from now
  // (this machine's time zone is the browser's).
  const until = new Date();
  until.setDate(until.getDate() + 30);
  const pad = (number) => String(number).padStart(2, "0");
  await page.fill("#key-expires", `${until.getFullYear()}-${pad(until.getMonth() + 1)}-${pad(until.getDate())}`);
  until.setHours(23, 59, 59, 0);
  await page.fill("#key-name", "deploy bot");
  await page.click("#create-key");
  await page.waitForSelector("#new-key-panel:not([hidden])");
  const key = await page.inputValue("#new-key");
  const id = await page.getAttribute("#new-key-panel", "data-id");
  check(key.startsWith("rk_"), `the shown key does not start with rk_: ${key}`);
  check(id && key.startsWith(`rk_${id}_`), `the shown key ${key} is not rk_<id>_… of ${id}`);
  check((await page.textContent("#key-form-message")).trim() === "", "the earlier error is still shown");
  const row = `#keys tr[data-id="${id}"]`;
  await page.waitForSelector(row);
  const rowText = await page.textContent(row);
  check(rowText.includes("deploy bot") && rowText.includes("posts:read"), `the new row reads ${rowText}`);
  check(!rowText.includes(key), "the table shows the secret");
  const expires = await page.getAttribute(`${row} td:nth-child(4)`, "title");
  check(new Date(expires).getTime() === until.getTime(), `the key expires at ${expires}, not ${until.toISOString()}`);
  check(await page.inputValue("#key-expires") === "", "the form was not reset");
  check(await page.isHidden("#no-keys"), "'no keys' is still shown");
  check(!(await page.isChecked('#key-scopes input[value="posts:read"]')), "the form was not reset");
  await page.screenshot({ path: screenshot, fullPage: true });

  // Copy puts the key on the clipboard and says so.
  await page.click("#copy-key");
  await page.waitForFunction(() => document.getElementById("copy-status").textContent === "Copied.");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(copied === key, `the clipboard holds ${copied}`);

  // The key works as a bearer credential, within its scope only.
  const posts = await withKey("/api/posts", key);
  check(posts.status === 200, `GET /api/posts with the key: ${posts.status} ${JSON.stringify(posts.body)}`);
  const profile = await withKey("/api/profile", key);
  check(profile.status === 403 && profile.body.code === "scope_missing",
    `GET /api/profile with a posts:read key: ${profile.status} ${JSON.stringify(profile.body)}`);

  // Shown once: after a reload the key is listed, its secret nowhere.
  await page.reload();
  await page.waitForSelector(row);
  const secret = key.slice(`rk_${id}_`.length);
  const html = await page.content();
  check(!html.includes(key) && !html.includes(secret), "the page shows the secret after a reload");
  check(await page.isHidden("#new-key-panel"), "the new-key panel is open after a reload");
  check((await page.inputValue("#new-key")) === "", "the key field is filled after a reload");

  // Revoked with its button, the row goes and the key is refused.
  await page.click(`${row} button.revoke`);
  await page.waitForSelector(row, { state: "detached" });
  await page.waitForSelector("#no-keys:not([hidden])");
  const refused = await withKey("/api/posts", key);
  check(refused.status === 401, `GET /api/posts with the revoked key: ${refused.status} ${JSON.stringify(refused.body)}`);
  const challenge = refused.headers.get("www-authenticate") || "";
  check(challenge.includes('error="invalid_token"'), `WWW-Authenticate: ${challenge}`);

  check((await page.textContent("#keys-message")).trim() === "", "the page reported an error");
  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log("BROWSER_OK");
} catch (error) {
  for (const open of browser.contexts().flatMap((context) => context.pages())) {
    console.error(`open page: ${open.url()}\n${(await open.content()).slice(0, 4000)}`);
  }
  throw error;
} finally {
  await browser.close();
}
