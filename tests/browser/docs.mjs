// Opens /docs in Debian's Chromium under the page's own CSP, waits until
// Swagger UI has rendered the document's operations (as many as expected),
// expands one, and saves a screenshot. Any script error, CSP violation or
// request to another origin fails. Prints BROWSER_OK on success.
//
//   node tests/browser/docs.mjs BASE_URL OPERATIONS SCREENSHOT
import { launch } from "./launch.mjs";

const [base, expected, screenshot] = process.argv.slice(2);
const browser = await launch();
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
  if (String(operations) !== expected) problems.push(`${operations} operations shown, ${expected} documented`);
  await page.click("#operations-posts-create_post .opblock-summary");
  await page.waitForSelector("#operations-posts-create_post .responses-table");
  await page.screenshot({ path: screenshot, fullPage: false });
  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log("BROWSER_OK");
} finally {
  await browser.close();
}
