// The open screen for `/clip/<id>#secret` and `/file/<id>#secret`: reads the clip's info
// (which never consumes it), asks for the password when there is one (checked by the server
// against the access-code hash, then mixed into the key), shows name, size and expiry of a V4
// file before any download, and requests nothing that spends a one-time or limited clip until
// the person clicks. Texts are shown with textContent; files are saved through the streaming
// service worker. Every failure ends in one plain sentence.

import { ApiError, getJson, postJson, serverConfig } from '../api.js';
import { fromBase64Url } from '../crypto/bytes.js';
import { accessCodeHash } from '../crypto/access.js';
import * as v4 from '../crypto/v4.js';
import { DownloadError, IN_MEMORY_WARN, downloadV3File, downloadV4, fetchText, streamingWorker } from '../download.js';
import { CLIP_ID, QUICK_ID, fragmentSecret, v4SecretBytes } from '../secret.js';
import { $, announce, copyText, formatBytes, formatExpiry, saveBlob, screen, setText, show } from './dom.js';

const MESSAGES = {
  invalid: 'This is not a valid ferry link. Check that it was copied whole.',
  incomplete: 'This link is incomplete: the key after “#” is missing. Copy the whole link and open it again.',
  badkey: 'The key in this link does not open this clip. The link may be cut short or changed.',
  gone: 'This link has expired or was already opened. Ask the sender to share it again.',
  password: 'That password is not right.',
  tampered: 'This content does not match its key: it was changed after it was shared. Nothing was saved.',
  truncated: 'The download ended before the end of the file. Nothing usable was saved.',
  network: 'The network failed. Check your connection and try again.',
  rate: 'Too many attempts from here. Wait a minute and try again.',
  server: 'The server could not answer. Try again in a moment.',
  insecure: 'This page is not on a secure connection, so the browser does not let it decrypt. Open the link over https:// (or on localhost).',
  cancelled: 'The download was stopped.',
  unsupported: 'This clip was made in a format this page does not know.',
};

class OpenError extends Error {
  constructor(kind) {
    super(MESSAGES[kind] ?? MESSAGES.server);
    this.kind = kind;
  }
}

function apiKind(e) {
  if (e instanceof OpenError) return e.kind;
  if (e instanceof DownloadError) return e.kind === 'password' ? 'gone' : e.kind;
  if (e instanceof ApiError) {
    if (e.status === 0) return 'network';
    if (e.status === 400) return 'invalid';
    if (e.status === 401) return 'password';
    if (e.status === 404 || e.status === 410) return 'gone';
    if (e.status === 429) return 'rate';
  }
  if (e instanceof v4.FormatError) return e.kind;
  return 'server';
}

function fail(e, extra = '') {
  const kind = apiKind(e);
  show('open-loading', false);
  show('open-once', false);
  const el = $('open-error');
  el.textContent = `${MESSAGES[kind] ?? MESSAGES.server}${extra ? ` ${extra}` : ''}`;
  el.dataset.kind = kind;
  show(el);
  el.focus();
  if (kind === 'gone') {
    show('open-details', false);
    show('open-go', false);
  }
}

/** What a failed fetch of a one-time clip adds: it was spent all the same. */
const spentNote = (info) => (info.oneTime ? 'This was a one-time link, so it cannot be fetched again.' : '');

/** After a failed download of a limited clip: how many are left now (or gone). */
async function recount(id, info) {
  if (info.downloadsLeft == null) return;
  try {
    const now = await getJson(`/api/clip/${id}/info`);
    info.downloadsLeft = now.downloadsLeft;
    setText('open-left', String(now.downloadsLeft));
  } catch (e) {
    if (apiKind(e) === 'gone') fail(e);
  }
}

const accessBody = (code) => (code ? { accessCode: code } : {});

/** The secret from the fragment, or (for a 6-character code) typed by the person. */
function askSecret() {
  return new Promise((resolve) => {
    show('open-loading', false);
    show('open-secret-form');
    $('open-secret').focus();
    $('open-secret-form').onsubmit = (e) => {
      e.preventDefault();
      const secret = $('open-secret').value.trim().toUpperCase();
      if (!QUICK_ID.test(secret)) {
        setText('open-error', 'The secret is 6 letters or digits.');
        show('open-error');
        return;
      }
      show('open-error', false);
      show('open-secret-form', false);
      history.replaceState(null, '', `#${secret}`);
      resolve(secret);
    };
  });
}

/** Ask until the server accepts the password; returns it with its access-code hash. */
function askPassword(id) {
  return new Promise((resolve, reject) => {
    show('open-loading', false);
    show('open-password-form');
    const input = $('open-password');
    input.focus();
    $('open-password-form').onsubmit = async (e) => {
      e.preventDefault();
      const password = input.value;
      if (!password.trim()) return;
      const button = $('open-unlock');
      button.disabled = true;
      button.textContent = 'Checking…';
      show('open-error', false);
      try {
        const { pbkdf2Salt } = await serverConfig();
        const accessCode = await accessCodeHash(password, pbkdf2Salt);
        await postJson(`/api/clip/${id}`, { accessCode });
        input.removeAttribute('aria-invalid');
        show('open-password-form', false);
        resolve({ password, accessCode });
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          fail(err);
          input.setAttribute('aria-invalid', 'true');
          input.focus();
          input.select();
        } else {
          show('open-password-form', false);
          reject(err);
        }
      } finally {
        button.disabled = false;
        button.textContent = 'Unlock';
      }
    };
  });
}

function details({ name, size, expiresAt, left }) {
  show('open-details');
  setText('open-name', name);
  setText('open-size', size);
  setText('open-expiry', formatExpiry(expiresAt));
  show('open-left-row', left != null);
  if (left != null) setText('open-left', String(left));
}

function spendingNote(info, what) {
  if (info.oneTime) return `This ${what} can be opened once: it is deleted when you do. Nothing has been fetched yet.`;
  if (info.downloadsLeft != null) {
    return `This ${what} can be fetched ${info.downloadsLeft} more ${info.downloadsLeft === 1 ? 'time' : 'times'}; each download counts. Nothing has been fetched yet.`;
  }
  return null;
}

/** Wait for the person to press the main button. */
function click(label) {
  const go = $('open-go');
  go.textContent = label;
  show('open-go');
  show('open-loading', false);
  go.focus();
  return new Promise((resolve) => {
    go.onclick = () => {
      go.onclick = null;
      show('open-once', false);
      show('open-go', false);
      // The button goes away; focus goes to what replaces it, not to the page's top.
      $('open-status').focus();
      resolve();
    };
  });
}

async function openText(id, info, secret, access) {
  setText('open-title', 'A shared text');
  // A cut-short key is caught before anything is fetched (and a one-time text spent).
  if (id.length === 10 ? secret.length !== 44 : !QUICK_ID.test(secret)) return fail(new OpenError('incomplete'));
  details({ name: '', size: '', expiresAt: info.expiresAt, left: info.downloadsLeft });
  show($('open-name').parentElement, false);
  show($('open-size').parentElement, false);
  const note = spendingNote(info, 'text');
  if (note) {
    setText('open-once', note);
    show('open-once');
    await click('Show the text');
  }
  show('open-loading');
  setText('open-loading', 'Decrypting…');
  let text;
  try {
    text = await fetchText(id, access.accessCode, secret, access.password);
  } catch (e) {
    const kind = apiKind(e);
    return fail(new OpenError(kind === 'tampered' ? 'badkey' : kind), kind === 'gone' ? '' : spentNote(info));
  }
  show('open-loading', false);
  const pre = $('open-text');
  pre.textContent = text;
  show('open-text-view');
  pre.focus();
  if (info.oneTime) setText('open-done', 'This one-time text is now deleted from the server. Copy it if you need it.');
  show('open-done', !!info.oneTime);
  announce('The text is shown.');
  $('open-copy').onclick = async () => setText('open-copied', (await copyText(text)) ? 'Text copied.' : 'Select the text and copy it.');
  $('open-save').onclick = () => saveBlob(new Blob([text], { type: 'text/plain;charset=utf-8' }), `ferry-${id}.txt`);
}

function downloadProgress(total) {
  show('open-dl');
  const bar = $('open-bar');
  const started = performance.now();
  return (bytes) => {
    bar.value = total ? Math.floor((bytes / total) * 1000) : 1000;
    const secs = (performance.now() - started) / 1000;
    const speed = secs > 0.5 ? ` · ${formatBytes(bytes / secs)}/s` : '';
    setText('open-dl-figures', `${formatBytes(bytes)} of ${formatBytes(total)}${speed}`);
  };
}

async function openV4File(id, info, secret, access) {
  const bytes = v4SecretBytes(secret);
  if (!bytes) return fail(new OpenError(secret.length < 43 ? 'incomplete' : 'badkey'));
  if (!info.header || !info.meta) return fail(new OpenError('unsupported'));
  let keys;
  let meta;
  try {
    const header = v4.parseHeader(fromBase64Url(info.header));
    let pw = access.password;
    if (header.password && !pw) pw = (await askPassword(id)).password;
    const pwKey = header.password ? await v4.passwordKey(pw, header.salt) : null;
    keys = await v4.deriveKeys(bytes, header, pwKey);
    meta = await v4.openMeta(keys, info.meta);
  } catch (e) {
    return fail(e instanceof v4.FormatError && e.kind !== 'unsupported' ? new OpenError('badkey') : e);
  }
  setText('open-title', 'A shared file');
  details({ name: meta.name || 'Unnamed file', size: formatBytes(meta.size), expiresAt: info.expiresAt, left: info.downloadsLeft });
  const worker = await streamingWorker();
  if (!worker && meta.size > IN_MEMORY_WARN) {
    setText('open-warning', `This browser cannot stream downloads to disk here, so the file (${formatBytes(meta.size)}) is decrypted in memory first. That may be slow or fail on this device.`);
    show('open-warning');
  }
  const note = spendingNote(info, 'file');
  if (note) {
    setText('open-once', note);
    show('open-once');
  }
  for (let round = 0; ; round++) {
    await click(`${round ? 'Download again' : 'Download'} (${formatBytes(meta.size)})`);
    show('open-error', false);
    const progress = downloadProgress(meta.size);
    setText('open-dl-figures', 'Starting…');
    try {
      const file = { id, accessCode: access.accessCode, keys, size: meta.size, streamLength: v4.streamLength(meta.size, keys.header.recordSize), name: meta.name, type: meta.type };
      await downloadV4(file, progress);
    } catch (e) {
      show('open-dl', false);
      fail(e, apiKind(e) === 'gone' ? '' : spentNote(info));
      if (info.oneTime || apiKind(e) === 'gone') return;
      await recount(id, info);
      if (info.downloadsLeft === 0) return;
      continue;
    }
    show('open-once', false);
    const left = info.downloadsLeft != null ? Math.max(0, info.downloadsLeft - 1) : null;
    if (left != null) setText('open-left', String(left));
    const after = info.oneTime ? ' This one-time link is now used up.' : left === 0 ? ' That was the last download this link allows.' : '';
    setText('open-done', `Saved “${meta.name}” (${formatBytes(meta.size)}).${after}`);
    show('open-done');
    announce(`Download finished.${after}`);
    if (info.oneTime || left === 0) return;
    info.downloadsLeft = left;
  }
}

async function openV3File(id, info, secret, access) {
  setText('open-title', 'A shared file');
  let size = '';
  try {
    const read = await postJson(`/api/clip/${id}`, accessBody(access.accessCode));
    size = `about ${formatBytes(read.filesize)}`;
  } catch {
    // The size is only a courtesy.
  }
  details({ name: 'Shown after the download (it is inside the encryption)', size, expiresAt: info.expiresAt, left: info.downloadsLeft });
  const note = spendingNote(info, 'file');
  if (note) {
    setText('open-once', note);
    show('open-once');
  }
  if (secret.length !== 44) return fail(new OpenError('incomplete'));
  await click('Download');
  show('open-loading');
  setText('open-loading', 'Downloading and decrypting…');
  try {
    const file = await downloadV3File(id, access.accessCode, secret, `ferry-${id}`);
    show('open-loading', false);
    setText('open-name', file.name ?? 'Unnamed file');
    setText('open-size', formatBytes(file.data.length));
    setText('open-done', `Saved “${file.name ?? `ferry-${id}`}”.${info.oneTime ? ' This one-time link is now used up.' : ''}`);
    show('open-done');
  } catch (e) {
    const kind = apiKind(e);
    fail(new OpenError(kind === 'tampered' ? 'badkey' : kind), kind === 'gone' ? '' : spentNote(info));
  }
}

export async function startOpen(kind, rawId) {
  screen('open', { focus: false });
  $('open-title').focus();
  if (!window.isSecureContext || !globalThis.crypto?.subtle) return fail(new OpenError('insecure'));
  const id = rawId;
  if (!CLIP_ID.test(id) && !QUICK_ID.test(id)) return fail(new OpenError('invalid'));
  window.addEventListener('hashchange', () => location.reload());
  let secret = fragmentSecret(location.hash);
  if (!secret) {
    if (id.length !== 6) return fail(new OpenError('incomplete'));
    secret = await askSecret();
  }
  if (id.length === 6) secret = secret.toUpperCase();
  if (kind === 'file') streamingWorker();

  let info;
  try {
    info = await getJson(`/api/clip/${id}/info`);
  } catch (e) {
    return fail(e);
  }
  let access = { password: '', accessCode: null };
  if (info.hasPassword) {
    try {
      access = await askPassword(id);
    } catch (e) {
      return fail(e);
    }
  }
  show('open-loading', false);
  if (info.contentType === 'text') return openText(id, info, secret, access);
  if (info.format === 4) return openV4File(id, info, secret, access);
  return openV3File(id, info, secret, access);
}
