// The email pages in Debian's Chromium, under their CSP. One step per run:
//   forgot BASE EMAIL SCREENSHOT    /login -> "Forgot password?" -> the
//                                   address -> the "on its way" message
//   reset  LINK PASSWORD SCREENSHOT the mailed reset link -> the new
//                                   password twice -> "Your password is changed"
//   verify LINK SCREENSHOT          the mailed verification link confirms
//                                   on opening
// Any script error or CSP violation fails. Prints BROWSER_OK on success.
import { launch } from "./launch.mjs";

const [step, ...args] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const problems = [];
  // A script error counts; a failed load the flow expects (the browser's
  // favicon 404) does not.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));

  if (step === "forgot") {
    const [base, email, screenshot] = args;
    await page.goto(`${base}/login`);
    await page.click("#forgot-password");
    await page.waitForURL(`${base}/reset-password`);
    await page.fill("#email", email);
    await page.click("#send-link");
    await page.waitForSelector("#done:not([hidden])");
    await page.screenshot({ path: screenshot });
  } else if (step === "reset") {
    const [link, password, screenshot] = args;
    await page.goto(link);
    // Two different passwords: refused by the page itself.
    await page.fill("#password", password);
    await page.fill("#confirm", `${password} typo`);
    await page.click("#reset");
    await page.waitForFunction(() => document.getElementById("message").textContent.includes("differ"));
    await page.fill("#confirm", password);
    await page.click("#reset");
    await page.waitForSelector("#done:not([hidden])");
    await page.screenshot({ path: screenshot });
  } else if (step === "verify") {
    const [link, screenshot] = args;
    await page.goto(link);
    await page.waitForSelector("#done:not([hidden])");
    await page.screenshot({ path: screenshot });
  } else {
    throw new Error(`unknown step ${step}`);
  }
  if (problems.length) throw new Error(`console errors: ${problems.join(" | ")}`);
  console.log("BROWSER_OK");
} finally {
  await browser.close();
}
