// Drives headless Chromium through the review queue of a live knockoff
// server: gives the analyst key once, moves with j/k, decides with c, undoes
// with u, skips through cases with s (timing each keypress until the next
// case is on screen), filters by brand, and prints what happened as JSON.
// Usage: node review.mjs BASE_URL ANALYST_KEY SKIPS BRAND
import { createRequire } from "module";
const require = createRequire(process.env.KNOCKOFF_E2E_MODULES + "/");
const { chromium } = require("playwright-core");

const [base, key, skips, brand] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const shown = (page) => page.evaluate(() => Number(document.querySelector("#case").dataset.id || 0));
const nextCase = async (page, from) => page.waitForFunction((f) => Number(document.querySelector("#case").dataset.id || 0) !== f, from, { timeout: 30000 });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/review");
  // No key yet: the page asks for one, once.
  await page.waitForSelector("#login:not([hidden])", { timeout: 30000 });
  await page.fill("#key", key);
  await page.press("#key", "Enter");
  await page.waitForFunction(() => document.querySelector("#case").dataset.id, null, { timeout: 30000 });
  await page.waitForFunction(() => document.querySelector("#photo").complete && document.querySelector("#photo").naturalWidth > 0, null, { timeout: 30000 });
  const first = await shown(page);
  const thumbs = await page.evaluate(() => [...document.querySelectorAll("tr.match img")].length);
  await page.keyboard.press("j");
  await nextCase(page, first);
  const second = await shown(page);
  await page.keyboard.press("k");
  await nextCase(page, second);
  const back = await shown(page);
  // c: counterfeit of the top match; the next case shows at once.
  await page.keyboard.press("c");
  await nextCase(page, first);
  const afterDecision = await shown(page);
  // (the decision is sent while the next case shows; wait until it is recorded)
  await page.waitForFunction(() => lastDecided !== null, null, { timeout: 30000 });
  // u: undo that decision; the page goes back to it.
  await page.keyboard.press("u");
  await page.waitForFunction((f) => Number(document.querySelector("#case").dataset.id) === f && document.querySelector("#status").textContent === "open", first, { timeout: 30000 });
  // s, many times: each keypress until the next case is on screen.
  await page.evaluate(() => { window.reviewTimings = []; });
  for (let i = 0; i < Number(skips); i++) {
    const before = await shown(page);
    await page.keyboard.press("s");
    await nextCase(page, before);
  }
  const timings = await page.evaluate(() => window.reviewTimings);
  // Filter by brand: every case listed has it.
  await page.fill("#brand", brand);
  await page.press("#brand", "Tab");
  await page.waitForFunction(() => document.querySelector("#position").textContent.startsWith("1 of"), null, { timeout: 30000 });
  const filtered = await page.evaluate(() => document.querySelector("#matches tbody").textContent);
  const error = await page.evaluate(() => document.querySelector("#error").textContent);
  console.log(JSON.stringify({ errors, error, first, second, back, afterDecision, thumbs, timings, filtered }));
} finally {
  await browser.close();
}
