// Opens an evidence pack's summary.html (unzipped) in headless Chromium,
// waits for its pictures, prints it to PDF and reports what it shows as JSON.
// Usage: node evidence.mjs SUMMARY_HTML_PATH PDF_PATH
import { createRequire } from "module";
const require = createRequire(process.env.KNOCKOFF_E2E_MODULES + "/");
const { chromium } = require("playwright-core");

const [summary, pdf] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto("file://" + summary);
  await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 10000 });
  const result = await page.evaluate(() => ({
    title: document.title,
    heading: document.querySelector("h1").textContent,
    images: document.images.length,
    broken: [...document.images].filter((i) => i.naturalWidth === 0).map((i) => i.getAttribute("src")),
  }));
  await page.pdf({ path: pdf, format: "A4" });
  result.errors = errors;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
