// The book as a reader sees it: loads every page of the built book (book/book, `mdbook build book`)
// in headless Chromium (Debian's /usr/bin/chromium) at 1280 and 1920 px and fails when
//   - content runs past its column without a scrollbar of its own (a table or a code block may
//     scroll inside its own box; the page itself may not scroll sideways),
//   - an image does not load,
//   - an equation is left untypeset (TeX source in the text, a KaTeX error, an empty <math>),
//   - the page asks the network for anything (the book must read offline),
//   - the page throws a script error.
// It writes screenshots of a few key pages to book/screenshots/ (not committed).
//
// Usage: node scripts/book-check/check.mjs [book/book] [book/screenshots]

import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, readdirSync, statSync, rmSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { tmpdir } from "node:os";
import { pathToFileURL } from "node:url";

const root = resolve(process.argv[2] ?? "book/book");
const shots = resolve(process.argv[3] ?? "book/screenshots");
const widths = [1280, 1920];
const screenshotPages = ["generated/table1_k400.html", "aim.html", "mst_adapter.html", "counting.html"];

function pages(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...pages(p));
    else if (name.endsWith(".html") && name !== "print.html" && name !== "404.html" && name !== "toc.html") out.push(p);
  }
  return out.sort();
}

// Runs in the page: every problem as a string.
function inspect() {
  const problems = [];
  const main = document.querySelector("main");
  if (!main) return ["no <main>"];
  const box = main.getBoundingClientRect();
  const doc = document.scrollingElement;
  if (doc.scrollWidth > window.innerWidth + 1) {
    problems.push(`the page scrolls sideways: ${doc.scrollWidth} px wide in a ${window.innerWidth} px window`);
  }
  // an element past the column's edges is fine only inside a box of its own that scrolls sideways
  const scrolls = (el) => {
    for (let a = el.parentElement; a && a !== main; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === "auto" || ox === "scroll") && a.getBoundingClientRect().right <= box.right + 1) return true;
    }
    return false;
  };
  const seen = new Set();
  for (const el of main.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > box.right + 1 || r.left < box.left - 1) {
      if (scrolls(el)) continue;
      // report the outermost offender once
      let top = el;
      while (top.parentElement && top.parentElement !== main && !seen.has(top.parentElement)) top = top.parentElement;
      if (seen.has(top)) continue;
      seen.add(top);
      const what = el.tagName.toLowerCase() + (el.className ? "." + String(el.className).split(" ")[0] : "");
      problems.push(`${what} runs ${Math.round(r.right - box.right)} px past the column: "${(el.textContent || "").trim().slice(0, 60)}"`);
    }
  }
  for (const img of main.querySelectorAll("img")) {
    if (!img.complete || img.naturalWidth === 0) problems.push(`image does not load: ${img.getAttribute("src")}`);
  }
  // equations: no TeX left in the text outside code, no KaTeX error, no empty <math>
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest("pre, code, math")) continue;
    if (/\$\$|\\(mathrm|frac|text|sum|big|tag)\b/.test(n.textContent)) {
      problems.push(`untypeset equation: "${n.textContent.trim().slice(0, 60)}"`);
    }
  }
  for (const e of main.querySelectorAll(".katex-error, merror")) problems.push(`equation error: ${e.textContent.slice(0, 60)}`);
  for (const m of main.querySelectorAll("math")) {
    const r = m.getBoundingClientRect();
    if (r.width < 5 || r.height < 5) problems.push(`equation drawn empty: ${m.textContent.slice(0, 40)}`);
  }
  return problems;
}

const userDataDir = mkdtempSync(join(tmpdir(), "book-check-"));
// a new, empty profile (--user-data-dir), as Playwright spells it
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: widths[0], height: 1000 },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
let failures = 0;
const files = pages(root);
let loads = 0;
const equations = {};
try {
  rmSync(shots, { recursive: true, force: true });
  mkdirSync(shots, { recursive: true });
  for (const width of widths) {
    const page = await context.newPage();
    await page.setViewportSize({ width, height: 1000 });
    let requests = [];
    let errors = [];
    page.on("request", (req) => {
      if (!req.url().startsWith("file:") && !req.url().startsWith("data:")) requests.push(req.url());
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    await context.route(/^(?!file:|data:)/, (route) => route.abort());
    for (const file of files) {
      const name = relative(root, file);
      requests = [];
      errors = [];
      await page.goto(pathToFileURL(file).href, { waitUntil: "load" });
      await page.evaluate(() => document.fonts.ready);
      loads++;
      const problems = await page.evaluate(inspect);
      problems.push(...requests.map((u) => `network request: ${u}`), ...errors.map((e) => `script error: ${e}`));
      equations[name] = await page.evaluate(() => document.querySelectorAll("main math").length);
      for (const p of problems) {
        console.log(`FAIL ${name} @${width}px: ${p}`);
        failures++;
      }
      if (width === 1280 && screenshotPages.includes(name)) {
        const out = join(shots, name.replace(/[/]/g, "_").replace(/\.html$/, ".png"));
        await page.screenshot({ path: out, fullPage: true });
      }
    }
    await page.close();
  }
  // the chapters with equations have them typeset (a page that lost its $$ would pass the above)
  for (const [name, min] of [["st_adapter.html", 1], ["aim.html", 3], ["mst_adapter.html", 4]]) {
    if ((equations[name] ?? 0) < min) {
      console.log(`FAIL ${name}: ${equations[name] ?? 0} typeset equations, expected at least ${min}`);
      failures++;
    }
  }
  console.log(
    `book check: ${loads} page loads (${files.length} pages at ${widths.join(" and ")} px), ${failures} problems; screenshots in ${relative(process.cwd(), shots)}/`,
  );
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failures > 0 ? 1 : 0);
