// Drives `rigwire control`'s page in headless Chromium (Debian's, through
// playwright-core: no browser download), as a person would: three rigs
// connect, init and start with a valid reference, a bad reference is
// refused in the page, a second tab sees the same log, a killed rig shows
// as disconnected with its reason while the others keep their state, a
// call from the form answers, and the page is 401 without its token.
//
// node control.mjs OPEN_URL RIG3_PID SCREENSHOT; exits 0 when every check holds.
import { chromium } from "playwright-core";

const [openUrl, rig3Pid, screenshot] = process.argv.slice(2);
const fail = (what) => {
  console.error(`FAIL: ${what}`);
  process.exit(1);
};
const browser = await chromium.launch({
  executablePath: process.env.RIGWIRE_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  await page.goto(openUrl);
  const rigs = page.locator("article.rig");
  const allHave = (attr, value) =>
    page.waitForFunction(
      ([a, v]) => {
        const cards = [...document.querySelectorAll("article.rig")];
        return cards.length === 3 && cards.every((c) => c.dataset[a] === v);
      },
      [attr, value],
      { timeout: 15000 },
    );
  await allHave("state", "authenticated").catch(() => fail("three rigs authenticated"));
  console.log("three rigs connected");

  await page.click('button[data-step="init"]');
  await allHave("status", "initialized").catch(() => fail("all initialized after Init"));
  await page.fill("#exp-ref", "2026-11-26_1_mouse");
  await page.click('button[data-step="start"]');
  await allHave("status", "running").catch(() => fail("all running after Start"));
  for (const text of await page.locator("article.rig .exp-ref").allTextContents()) {
    if (text !== "2026-11-26_1_mouse") fail(`experiment reference shown: ${text}`);
  }
  console.log("init and start: all running");

  // A bad reference is refused in the page, and nothing is sent.
  const actions = () => page.locator("#log li.action").count();
  const before = await actions();
  await page.fill("#exp-ref", "2026-13-40_1_mouse");
  await page.click('button[data-step="start"]');
  const said = await page.textContent("#step-error");
  if (!said.includes("not started")) fail(`bad reference refused: ${said}`);
  await page.waitForTimeout(500);
  if ((await actions()) !== before) fail("a bad reference sent nothing");
  console.log(`bad reference refused: ${said}`);

  // A second tab sees the same log.
  const second = await context.newPage();
  await second.goto(openUrl);
  await second.waitForFunction(() => document.querySelectorAll("article.rig").length === 3);
  const logOf = (p) => p.locator("#log li").allTextContents();
  const [one, two] = [await logOf(page), await logOf(second)];
  if (JSON.stringify(one) !== JSON.stringify(two)) fail(`the second tab's log differs:\n${one}\n${two}`);
  console.log(`the second tab sees the same ${two.length} log entries`);

  // A call from the first tab shows in both.
  const rig1 = page.locator('article.rig[data-rig="rig-1"]');
  await rig1.locator(".method").fill("add");
  await rig1.locator(".args").fill("[1, 2]");
  await rig1.locator(".call button").click();
  await rig1.locator(".last.ok").filter({ hasText: "3.0" }).waitFor({ timeout: 10000 })
    .catch(() => fail("the call's result beside rig-1"));
  await second.locator("#log li.result").filter({ hasText: "add → 3.0" }).waitFor({ timeout: 10000 })
    .catch(() => fail("the second tab sees the call's result"));
  console.log("a call answers, in both tabs");

  // A rig killed: shown disconnected with the reason; the others keep their state.
  process.kill(Number(rig3Pid), "SIGKILL");
  const rig3 = page.locator('article.rig[data-rig="rig-3"]');
  await page.waitForFunction(
    () => document.querySelector('article.rig[data-rig="rig-3"]').dataset.state === "disconnected",
    null,
    { timeout: 10000 },
  ).catch(() => fail("rig-3 disconnected within the keepalive bound"));
  const reason = await rig3.locator(".reason").textContent();
  if (!reason) fail("rig-3's reason shown");
  for (const name of ["rig-1", "rig-2"]) {
    const card = page.locator(`article.rig[data-rig="${name}"]`);
    if ((await card.getAttribute("data-state")) !== "authenticated") fail(`${name} still connected`);
    if ((await card.getAttribute("data-status")) !== "running") fail(`${name} still running`);
  }
  console.log(`rig-3 disconnected: ${reason}`);
  await page.screenshot({ path: screenshot, fullPage: false });

  // Without the token: 401, for the page and its files alike.
  const base = openUrl.split("?")[0];
  for (const path of ["", "app.js", "ws"]) {
    const status = (await page.request.get(base + path)).status();
    if (status !== 401) fail(`GET /${path} without the token: ${status}`);
  }
  console.log("401 without the token");
} finally {
  await browser.close();
}
