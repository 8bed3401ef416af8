// A bare Chrome DevTools Protocol client over --remote-debugging-pipe, for measurements that
// Playwright's instrumentation would distort: Playwright enables the Network domain on every
// page, and Chromium then copies every request body into DevTools events and buffers (512 MiB
// of upload bodies cost the renderer more memory than the upload itself). This client enables
// nothing but what it calls, as a person's browser would run.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS } from './harness.mjs';

export async function rawBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'ferry-cdp-'));
  const child = spawn(CHROMIUM, [...CHROMIUM_ARGS, '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank'], {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'],
  });
  const toBrowser = child.stdio[3];
  const fromBrowser = child.stdio[4];
  let nextId = 1;
  const pending = new Map();
  const listeners = new Set();
  let buffer = Buffer.alloc(0);
  fromBrowser.on('data', (data) => {
    buffer = Buffer.concat([buffer, data]);
    let end;
    while ((end = buffer.indexOf(0)) >= 0) {
      const msg = JSON.parse(buffer.subarray(0, end).toString());
      buffer = buffer.subarray(end + 1);
      if (msg.id && pending.has(msg.id)) {
        const { resolve, reject } = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) reject(new Error(`${msg.error.message} (${msg.error.code})`));
        else resolve(msg.result);
      } else if (msg.method) {
        for (const l of listeners) l(msg);
      }
    }
  });
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  const waitEvent = (method, predicate = () => true, ms = 600000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        listeners.delete(l);
        reject(new Error(`timed out waiting for ${method}`));
      }, ms);
      const l = (msg) => {
        if (msg.method === method && predicate(msg.params)) {
          clearTimeout(timer);
          listeners.delete(l);
          resolve(msg.params);
        }
      };
      listeners.add(l);
    });

  await send('Browser.getVersion');
  return {
    pid: child.pid,
    send,
    waitEvent,
    /** A new tab, with helpers bound to its session. */
    async newPage() {
      const { browserContextId } = await send('Target.createBrowserContext');
      const { targetId } = await send('Target.createTarget', { url: 'about:blank', browserContextId });
      const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
      const call = (method, params) => send(method, params, sessionId);
      const evaluate = async (expression) => {
        const r = await call('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
        if (r.exceptionDetails) throw new Error(r.exceptionDetails.exception?.description ?? r.exceptionDetails.text);
        return r.result.value;
      };
      return {
        browserContextId,
        call,
        evaluate,
        async goto(url) {
          await call('Page.navigate', { url });
          await this.until(`document.readyState === 'complete' && document.getElementById('main')?.dataset.ready === 'true'`);
        },
        async until(expression, ms = 600000) {
          const end = Date.now() + ms;
          for (;;) {
            if (await evaluate(`Boolean(${expression})`).catch(() => false)) return;
            if (Date.now() > end) throw new Error(`timed out waiting for ${expression}`);
            await new Promise((r) => setTimeout(r, 100));
          }
        },
        async setFile(selector, path) {
          const { root } = await call('DOM.getDocument', { depth: 0 });
          const { nodeId } = await call('DOM.querySelector', { nodeId: root.nodeId, selector });
          await call('DOM.setFileInputFiles', { nodeId, files: [path] });
        },
        /** A real mouse click in the middle of the element. */
        async click(selector) {
          const box = await evaluate(`(() => { const el = document.querySelector(${JSON.stringify(selector)}); el.scrollIntoView({ block: 'center' }); const r = el.getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; })()`);
          for (const type of ['mousePressed', 'mouseReleased']) {
            await call('Input.dispatchMouseEvent', { type, x: box.x, y: box.y, button: 'left', clickCount: 1 });
          }
        },
      };
    },
    async close() {
      await send('Browser.close').catch(() => {});
      await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r()));
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
