// Renders the app icons of the web app manifest (static/icons/*.png) from ferry's logo with
// Debian's Chromium, so the PNGs in the repository can be made again from the SVG: 192 and
// 512 px "any" icons (the rounded square as the favicon draws it) and 512 px "maskable" (the
// ship inside the safe zone on a full-bleed square). Run from the repository root:
//   node scripts/make-icons.mjs          (uses tests/ui/node_modules/playwright-core)

import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const require = createRequire(join(ROOT, 'tests/ui/package.json'));
const { chromium } = require('playwright-core');

const SHIP = '<path d="M6 19h20l-3 6H9z" fill="#fff"/><path d="M15 7v10h-6z" fill="#fff"/><path d="M17 9v8h6z" fill="#cdeeee"/>';
const ANY = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#0b6e6e"/>${SHIP}</svg>`;
// Maskable: the platform cuts any shape from the square; the ship stays within the middle 80 %.
const MASKABLE = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="-6 -6 44 44"><rect x="-6" y="-6" width="44" height="44" fill="#0b6e6e"/>${SHIP}</svg>`;

const browser = await chromium.launch({ executablePath: process.env.FERRY_TEST_CHROMIUM || '/usr/bin/chromium' });
try {
  for (const [name, svg, size] of [
    ['icon-192.png', ANY, 192],
    ['icon-512.png', ANY, 512],
    ['maskable-512.png', MASKABLE, 512],
  ]) {
    const page = await browser.newPage({ viewport: { width: size, height: size } });
    await page.setContent(`<style>html,body{margin:0;background:transparent}svg{display:block;width:${size}px;height:${size}px}</style>${svg}`);
    await page.screenshot({ path: join(ROOT, 'static/icons', name), omitBackground: true });
    await page.close();
    console.log(`static/icons/${name}`);
  }
} finally {
  await browser.close();
}
