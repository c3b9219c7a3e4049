// Signs in on Rampart's /login page in Debian's Chromium twice: with the
// configured OpenID provider (its login and consent pages), then with email
// and password. Each time it waits for /account to show the user, saves a
// screenshot and signs out. Prints BROWSER_OK on success.
//
//   node tests/browser/oauth.mjs BASE_URL PROVIDER_LOGIN EXPECTED_EMAIL EMAIL PASSWORD SCREENSHOT_PREFIX
import { launch } from "./launch.mjs";

const [base, providerLogin, expectedEmail, email, password, screenshotPrefix] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  const problems = [];
  // Script errors and CSP violations on Rampart's pages fail the test (the
  // provider's development pages are not ours to judge).
  page.on("console", (message) => {
    const ours = page.url().startsWith(base);
    if (ours && message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(message.text());
    }
  });
  page.on("pageerror", (error) => problems.push(String(error)));

  // 1. "Sign in with …" at the provider.
  await page.goto(`${base}/login`);
  await page.click("#provider-test");
  await page.waitForSelector('input[name="login"]');
  await page.fill('input[name="login"]', providerLogin);
  await page.fill('input[name="password"]', "any password");
  await page.click('button[type="submit"]');
  await page.waitForSelector('input[name="prompt"][value="consent"]', { state: "attached" });
  await page.click('button[type="submit"]');
  await page.waitForURL(`${base}/account`);
  const shown = await page.textContent("#account-email");
  if (shown !== expectedEmail) throw new Error(`/account shows ${shown}, expected ${expectedEmail}`);
  await page.screenshot({ path: `${screenshotPrefix}-oauth.png`, fullPage: true });
  await page.click("#sign-out");
  await page.waitForURL(`${base}/login`);

  // 2. Email and password on the same page.
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#sign-in");
  await page.waitForURL(`${base}/account`);
  const own = await page.textContent("#account-email");
  if (own !== email) throw new Error(`/account shows ${own}, expected ${email}`);
  await page.screenshot({ path: `${screenshotPrefix}-password.png`, fullPage: true });
  await page.click("#sign-out");
  await page.waitForURL(`${base}/login`);

  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log("BROWSER_OK");
} catch (error) {
  const pages = browser.contexts().flatMap((context) => context.pages());
  for (const open of pages) console.error(`open page: ${open.url()}\n${(await open.content()).slice(0, 2000)}`);
  throw error;
} finally {
  await browser.close();
}
