// The open screen for `/clip/<id>#secret` and `/file/<id>#secret`: a key missing or cut short
// is told before anything else; then it reads the clip's info (which never consumes it) and
// shows what the server knows — kind, size, expiry, one-time or downloads left, that the sender
// set a password — before asking for that password (checked by the server against the
// access-code hash, then mixed into the key); a V4 file's name (and a ZIP's list of files)
// follows from its encrypted metadata before any download, and nothing that spends a one-time
// or limited clip is requested until the person clicks. Texts are shown with textContent;
// files are saved through the streaming service worker. A link that cannot be opened gets a
// heading of its own saying which case it is (expired, opened, deleted, no such link, ...).

import { ApiError, getJson, postJson, serverConfig } from '../api.js';
import { fromBase64Url } from '../crypto/bytes.js';
import { accessCodeHash } from '../crypto/access.js';
import * as v4 from '../crypto/v4.js';
import { DownloadError, IN_MEMORY_WARN, downloadV3File, downloadV4, fetchText, streamingWorker } from '../download.js';
import { CLIP_ID, QUICK_ID, fragmentSecret, v4SecretBytes } from '../secret.js';
import { $, announce, copyText, formatBytes, formatExpiry, saveBlob, screen, setText, show } from './dom.js';

/**
 * Each way a link can fail: a heading of its own when the link cannot be opened at all
 * (`title`), and the sentence under it. Kinds without a title are told inline, and the page
 * stays as it was (a wrong password, a network hiccup during a download).
 */
const FAILURES = {
  invalid: ['This is not a ferry link', 'The address does not have the shape of a ferry link. Check that it was copied whole.'],
  incomplete: [
    'This link is incomplete',
    'Part of it was lost when it was copied: the key after “#” is missing or cut short, so nothing can be decrypted. Ask the sender for the whole link, or copy it again.',
  ],
  badkey: ['The key does not fit', 'The key in this link does not open this clip. The link may have been cut short or changed when it was copied.'],
  expired: ['This link has expired', 'The sender chose how long it would last, and that time is over. Ask them to share it again.'],
  consumed: ['This link was already opened', 'It could be opened a set number of times and has been, so its content is deleted. Ask the sender to share it again.'],
  deleted: ['This link was deleted', 'The sender deleted it before it expired. Ask them if they meant to.'],
  notfound: [
    'No such link',
    'ferry has nothing under this link. It may be mistyped, or it expired or was used up so long ago that ferry no longer remembers it.',
  ],
  gone: ['This link no longer opens', 'It has expired, was used up or was deleted. Ask the sender to share it again.'],
  tampered: ['The content was changed', 'This content does not match its key: it was changed after it was shared. Nothing was saved.'],
  unsupported: ['A format this page does not know', 'This clip was made in a format this page does not know.'],
  insecure: [
    'Not a secure connection',
    'This page is not on a secure connection, so the browser does not let it decrypt. Open the link over https:// (or on localhost).',
  ],
  password: [null, 'That password is not right.'],
  truncated: [null, 'The download ended before the end of the file. Nothing usable was saved.'],
  network: [null, 'The network failed. Check your connection and try again.'],
  rate: [null, 'Too many attempts from here. Wait a minute and try again.'],
  server: [null, 'The server could not answer. Try again in a moment.'],
  cancelled: [null, 'The download was stopped.'],
};

/** The server's reason for a 404 (a tombstone it keeps for a while), as a failure kind. */
const GONE_CODES = { clip_expired: 'expired', clip_consumed: 'consumed', clip_deleted: 'deleted', clip_not_found: 'notfound' };

class OpenError extends Error {
  constructor(kind) {
    super((FAILURES[kind] ?? FAILURES.server)[1]);
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
    if (e.status === 404) return GONE_CODES[e.code] ?? 'gone';
    if (e.status === 410) return 'gone';
    if (e.status === 429) return 'rate';
  }
  if (e instanceof v4.FormatError) return e.kind;
  return 'server';
}

const GONE_KINDS = new Set(['expired', 'consumed', 'deleted', 'notfound', 'gone']);

/** Everything on the card that belongs to a link that still opens. */
const LIVE_PARTS = ['open-loading', 'open-details', 'open-files-view', 'open-once', 'open-password-form', 'open-secret-form', 'open-go', 'open-dl', 'open-warning'];

function fail(e, extra = '') {
  const kind = apiKind(e);
  const [title, sentence] = FAILURES[kind] ?? FAILURES.server;
  show('open-loading', false);
  show('open-once', false);
  if (title) {
    // The link cannot be opened: its own heading, the card holds nothing else.
    for (const id of LIVE_PARTS) show(id, false);
    show($('open-go').parentElement, false);
    setText('open-title', title);
    document.title = `${title} · ferry`;
  }
  const el = $('open-error');
  el.textContent = `${sentence}${extra ? ` ${extra}` : ''}`;
  el.dataset.kind = kind;
  el.classList.toggle('final', !!title);
  show(el);
  (title ? $('open-title') : el).focus();
}

/**
 * After a download answered "gone": ask the info route why (it never consumes anything), so
 * the screen says expired, opened or deleted rather than a guess.
 */
async function failGone(id, e, extra = '') {
  if (apiKind(e) === 'gone') {
    try {
      await getJson(`/api/clip/${id}/info`);
    } catch (why) {
      if (why instanceof ApiError && why.status === 404) return fail(why);
    }
  }
  return fail(e, extra);
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
    if (GONE_KINDS.has(apiKind(e))) {
      info.downloadsLeft = 0;
      fail(e);
    }
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

/** V3 overhead: version, salt, IV and tag around the (padded) text. */
const V3_OVERHEAD = 1 + 32 + 12 + 16;
/** A V3 text under 10 240 bytes is padded to this, so its size shows only "short". */
const V3_PADDED = 10244;

/** The size the server's byte count allows us to state before anything is decrypted. */
function knownSize(info) {
  const stored = info.size;
  if (!Number.isSafeInteger(stored)) return null;
  if (info.format === 4 && info.header) {
    try {
      const plain = v4.plainSize(stored, v4.parseHeader(fromBase64Url(info.header)).recordSize);
      if (plain != null) return formatBytes(plain);
    } catch {
      // A header that does not parse fails later, with its own words.
    }
  }
  if (info.contentType === 'text') return stored - V3_OVERHEAD <= V3_PADDED ? 'Short (under 10 KiB)' : `About ${formatBytes(stored - V3_OVERHEAD)}`;
  return `About ${formatBytes(stored)}`;
}

/** What the server knows, shown before any password or download: kind, size, expiry, rules. */
function details(info, { kind, name = null, size = knownSize(info) }) {
  show('open-details');
  setText('open-kind', kind);
  show('open-name-row', !!name);
  if (name) setText('open-name', name);
  show('open-size-row', !!size);
  if (size) setText('open-size', size);
  setText('open-expiry', formatExpiry(info.expiresAt));
  const left = info.downloadsLeft;
  show('open-left-row', left != null);
  if (left != null) setText('open-left', String(left));
  show('open-rule-row', !!info.oneTime);
  if (info.oneTime) setText('open-rule', 'Once: it is deleted when it is opened');
  show('open-protected-row', !!info.hasPassword);
}

/** The entries of a ZIP of several files, from its encrypted metadata. */
function fileList(meta) {
  show('open-files-view', true);
  setText('open-files-title', `${meta.count} ${meta.count === 1 ? 'file' : 'files'} in this ZIP`);
  const ul = $('open-files');
  ul.replaceChildren();
  for (const f of meta.files) {
    const li = document.createElement('li');
    const path = document.createElement('span');
    path.className = 'path';
    path.textContent = f.path;
    const size = document.createElement('span');
    size.className = 'hint';
    size.textContent = formatBytes(f.size);
    li.append(path, ' ', size);
    ul.append(li);
  }
  const more = meta.count - meta.files.length;
  show('open-files-more', more > 0);
  if (more > 0) setText('open-files-more', `and ${more} more (the list is cut short to keep it small; the ZIP has them all)`);
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
  if (id.length === 6 && !QUICK_ID.test(secret)) return fail(new OpenError('incomplete'));
  details(info, { kind: 'Text' });
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
    return failGone(id, kind === 'tampered' ? new OpenError('badkey') : e, GONE_KINDS.has(kind) ? '' : spentNote(info));
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
  const several = Array.isArray(meta.files);
  setText('open-title', several ? 'Shared files' : 'A shared file');
  details(info, { kind: several ? 'Several files, downloaded as one ZIP' : 'File', name: meta.name || 'Unnamed file', size: formatBytes(meta.size) });
  if (several) fileList(meta);
  const worker = await streamingWorker();
  if (!worker && meta.size > IN_MEMORY_WARN) {
    setText('open-warning', `This browser cannot stream downloads to disk here, so the file (${formatBytes(meta.size)}) is decrypted in memory first. That may be slow or fail on this device.`);
    show('open-warning');
  }
  const note = spendingNote(info, several ? 'ZIP' : 'file');
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
      const gone = GONE_KINDS.has(apiKind(e));
      if (gone) return failGone(id, e);
      fail(e, spentNote(info));
      if (info.oneTime) return;
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
  details(info, { kind: 'File', name: 'Shown after the download (it is inside the encryption)' });
  const note = spendingNote(info, 'file');
  if (note) {
    setText('open-once', note);
    show('open-once');
  }
  await click('Download');
  show('open-loading');
  setText('open-loading', 'Downloading and decrypting…');
  try {
    const file = await downloadV3File(id, access.accessCode, secret, `ferry-${id}`);
    show('open-loading', false);
    setText('open-name', file.name ?? 'Unnamed file');
    setText('open-size', formatBytes(file.data.length));
    show('open-size-row');
    setText('open-done', `Saved “${file.name ?? `ferry-${id}`}”.${info.oneTime ? ' This one-time link is now used up.' : ''}`);
    show('open-done');
  } catch (e) {
    const kind = apiKind(e);
    failGone(id, kind === 'tampered' ? new OpenError('badkey') : e, GONE_KINDS.has(kind) ? '' : spentNote(info));
  }
}

const V3_SECRET_LENGTH = 44;
const V4_SECRET_LENGTH = 43;

/**
 * What is wrong with the fragment of a 10-character link, judged before anything is fetched:
 * absent, or shorter than any key its link can carry, is "incomplete" (lost in copying): a
 * `/clip/` link carries a V3 key (44 characters), a `/file/` link a V4 (43) or a Qopy V3 one
 * (44), told apart once the server names the format. Longer than any key does not fit.
 */
function fragmentProblem(pathKind, secret) {
  if (!secret || secret.length < (pathKind === 'clip' ? V3_SECRET_LENGTH : V4_SECRET_LENGTH)) return 'incomplete';
  if (secret.length > V3_SECRET_LENGTH) return 'badkey';
  return null;
}

/** The key against the format the server names: texts and Qopy files need all 44 characters of a V3 key. */
function keyProblem(info, secret) {
  if (info.contentType !== 'text' && info.format === 4) return v4SecretBytes(secret) ? null : 'badkey';
  return secret.length === V3_SECRET_LENGTH ? null : 'incomplete';
}

export async function startOpen(kind, rawId) {
  screen('open', { focus: false });
  $('open-title').focus();
  if (!window.isSecureContext || !globalThis.crypto?.subtle) return fail(new OpenError('insecure'));
  const id = rawId;
  if (!CLIP_ID.test(id) && !QUICK_ID.test(id)) return fail(new OpenError('invalid'));
  window.addEventListener('hashchange', () => location.reload());
  let secret = fragmentSecret(location.hash);
  // A link cut short is told as such before anything else (before any password is asked).
  if (id.length === 10) {
    const problem = fragmentProblem(kind, secret);
    if (problem) return fail(new OpenError(problem));
  } else if (!secret) {
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
  if (id.length === 10) {
    const problem = keyProblem(info, secret);
    if (problem) return fail(new OpenError(problem));
  }
  // What the server knows comes first; the password box follows it.
  setText('open-title', info.contentType === 'text' ? 'A shared text' : 'A shared file');
  details(info, { kind: info.contentType === 'text' ? 'Text' : 'File' });
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
