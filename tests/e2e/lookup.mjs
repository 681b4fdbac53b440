// Drives headless Chromium against a live knockoff server: opens the page,
// uploads a photo through the file picker, waits for the matches, and prints
// what the page shows as JSON. Usage: node lookup.mjs BASE_URL IMAGE_PATH
import { createRequire } from "module";
const require = createRequire(process.env.KNOCKOFF_E2E_MODULES + "/");
const { chromium } = require("playwright-core");

const [base, image] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  await page.setInputFiles("#file", image);
  await page.waitForSelector("tr.match", { timeout: 30000 });
  // Thumbnails load asynchronously.
  await page.waitForFunction(() => [...document.querySelectorAll("tr.match img")].every((i) => i.complete && i.naturalWidth > 0), null, { timeout: 10000 });
  const result = await page.evaluate(() => ({
    verdict: document.querySelector("#verdict").textContent,
    summary: document.querySelector("#summary").textContent,
    rows: [...document.querySelectorAll("tr.match")].map((tr) => ({
      product: tr.querySelector(".pid").textContent,
      label: tr.children[2].textContent,
      similarity: tr.children[3].textContent,
      confidence: tr.children[4].textContent,
      thumbnail: tr.querySelector("img").naturalWidth,
    })),
  }));
  await page.screenshot({ path: process.env.KNOCKOFF_E2E_SCREENSHOT || "/tmp/knockoff-e2e.png", fullPage: true });
  result.errors = errors;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
