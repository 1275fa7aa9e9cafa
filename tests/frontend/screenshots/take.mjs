// Renders the panel in Debian's Chromium in four states, checks each shows what it must, and
// writes docs/screenshots/<state>.png. Run: pnpm run screenshots (needs /usr/bin/chromium).
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { build } from "esbuild";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..", "..");
const outDir = join(root, "docs", "screenshots");

/** What each state must show; a picture of the wrong state is worse than none. */
const checks = {
  async idle(page) {
    await visible(page.getByText("192.168.1.42:9999"));
    await visible(page.getByText("Where to point the hub"));
    await switchIs(page, true);
  },
  async pairing(page) {
    await visible(page.getByLabel("Pairing code").getByText("482 913"));
    await visible(page.getByText(/Expires in \d:\d\d/));
  },
  async uploading(page) {
    await visible(page.getByText("Hollow Knight", { exact: true }));
    await visible(page.getByText("Hollow Knight_Data/resources.assets"));
    await visible(page.getByText("12.5 MB/s · 1:23 left"));
    const progress = await page.getByRole("progressbar").getAttribute("aria-valuenow");
    if (progress !== "42") throw new Error(`progress bar shows ${progress}, expected 42`);
  },
  async blocked(page) {
    await visible(page.getByText(/Blocked: every hub is refused/));
    await switchIs(page, false);
  },
};

async function visible(locator) {
  await locator.first().waitFor({ state: "visible", timeout: 5000 });
}

async function switchIs(page, on) {
  const checked = await page.getByRole("switch", { name: "Accept connections" }).isChecked();
  if (checked !== on) throw new Error(`"Accept connections" is ${checked ? "on" : "off"}, expected ${on ? "on" : "off"}`);
}

async function bundlePage(dir) {
  const mock = (file) => join(here, "..", "mocks", file);
  await build({
    entryPoints: [join(here, "page.tsx")],
    outfile: join(dir, "page.js"),
    bundle: true,
    format: "iife",
    jsx: "automatic",
    alias: { "@decky/api": mock("decky-api.ts"), "@decky/ui": mock("decky-ui.tsx") },
    define: { "process.env.NODE_ENV": '"production"' },
    logLevel: "warning",
  });
  const css = await readFile(join(here, "steam-qam.css"), "utf8");
  const html = `<!doctype html><html><head><meta charset="utf-8"><style>${css}</style></head>` +
    `<body><div id="root"></div><script src="page.js"></script></body></html>`;
  await writeFile(join(dir, "index.html"), html);
  return pathToFileURL(join(dir, "index.html")).href;
}

async function main() {
  if (!existsSync(CHROMIUM)) {
    console.error(`screenshots: ${CHROMIUM} not found. Install Debian's Chromium first: apt-get install -y chromium`);
    process.exit(1);
  }
  const work = await mkdtemp(join(tmpdir(), "capydeploy-shots-"));
  const context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
    viewport: { width: 854, height: 800 },
    deviceScaleFactor: 1,
    locale: "en-US",
    timezoneId: "UTC",
  });
  try {
    const url = await bundlePage(work);
    await mkdir(outDir, { recursive: true });
    for (const [state, check] of Object.entries(checks)) {
      const page = await context.newPage();
      const errors = [];
      page.on("pageerror", (error) => errors.push(error.message));
      page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
      await page.goto(`${url}#${state}`);
      await check(page);
      if (errors.length) throw new Error(`${state}: the page logged errors:\n${errors.join("\n")}`);
      const file = join(outDir, `${state}.png`);
      await page.screenshot({ path: file });
      console.log(`screenshots: ${state} ok → ${file.slice(root.length + 1)}`);
      await page.close();
    }
  } finally {
    await context.close();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(`screenshots: ${error.stack ?? error}`);
  process.exit(1);
});
