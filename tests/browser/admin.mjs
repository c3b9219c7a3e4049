// Opens /admin in Debian's Chromium, signs in as an admin on /login, waits for the
// charts and the listed block, saves a screenshot, clicks "Unblock" and
// waits for the row to go. Prints BROWSER_OK on success.
//
//   node tests/browser/admin.mjs BASE_URL EMAIL PASSWORD BLOCKED_IP SCREENSHOT
import { launch } from "./launch.mjs";

const [base, email, password, blockedIp, screenshot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  // Script errors and CSP violations fail the test; an HTTP status the page
  // expects (the 401 before sign-in, the browser's favicon 404) does not.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));

  // Not signed in: /admin sends the browser to /login, which comes back.
  await page.goto(`${base}/admin`);
  await page.waitForURL(`${base}/login?next=%2Fadmin`);
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#sign-in");
  await page.waitForURL(`${base}/admin`);
  await page.waitForSelector("#dashboard:not([hidden])");
  // The charts rendered, with traffic in them.
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#traffic-chart svg rect")].some((bar) => Number(bar.getAttribute("height")) > 0));
  await page.waitForSelector("#denials-chart svg polyline", { state: "attached" });
  const row = `#blocks tr[data-ip="${blockedIp}"]`;
  await page.waitForSelector(row);
  await page.waitForSelector("#events tbody tr");
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.click(`${row} button`);
  await page.waitForSelector(row, { state: "detached" });
  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log("BROWSER_OK");
} finally {
  await browser.close();
}
