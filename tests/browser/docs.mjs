// Opens /docs in Debian's Chromium under the page's own CSP, waits until
// Swagger UI has rendered the document's operations, expands one, and saves
// a screenshot. Any script error or CSP violation fails. Prints
// DOCS_OK <operations> on success.
//
//   node tests/browser/docs.mjs BASE_URL SCREENSHOT
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  // Nothing may be fetched from anywhere but the server itself.
  const origin = new URL(base).origin;
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol !== "data:" && url.origin !== origin) problems.push(`request to ${request.url()}`);
  });

  await page.goto(`${base}/docs`);
  await page.waitForSelector(".swagger-ui .info .title");
  await page.waitForSelector(".opblock");
  const operations = await page.locator(".opblock").count();
  await page.click("#operations-posts-create_post .opblock-summary");
  await page.waitForSelector("#operations-posts-create_post .responses-table");
  await page.screenshot({ path: screenshot, fullPage: false });
  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log(`DOCS_OK ${operations}`);
} finally {
  await browser.close();
}
