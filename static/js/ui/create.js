// The create screen: Text and File tabs (ARIA tabs, arrow keys), paste and drag-and-drop
// anywhere on the page (files, folders, images from the clipboard), a keyboard-reachable drop
// zone and folder picker (several files go as one ZIP), the size limits refused as soon as
// something is chosen, the options under a disclosure that remembers its state (expiry from
// /api/config, one-time or a download limit, password, quick share), and the offer to resume
// an unfinished upload after a reload. It hands the work to upload.js and shows progress, then
// the link.

import { ApiError, serverConfig } from '../api.js';
import { unfinishedUploads } from '../resume-store.js';
import { parseTyped } from '../secret.js';
import { Cancelled, UserError, archiveOf, discardUpload, fileTooLarge, resumeFile, shareFile, shareText } from '../upload.js';
import { $, expiryName, formatBytes, screen, setText, show } from './dom.js';
import { streamingWorker } from '../download.js';
import { progressScreen } from './progress.js';
import { resultScreen } from './result.js';

/** Files listed on the File tab before it says "and N more". */
const LIST_SHOWN = 50;

let chosen = null;
let config = null;
let busy = false;

function selectTab(name, { focus = false } = {}) {
  for (const tab of ['text', 'file']) {
    const selected = tab === name;
    const button = $(`tab-${tab}`);
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    show(`panel-${tab}`, selected);
    if (selected && focus) button.focus();
  }
  $('share').textContent = name === 'text' ? 'Encrypt and share' : 'Encrypt and upload';
  syncOptions();
}

const currentTab = () => ($('tab-file').getAttribute('aria-selected') === 'true' ? 'file' : 'text');

function setupTabs() {
  for (const tab of ['text', 'file']) $(`tab-${tab}`).addEventListener('click', () => selectTab(tab));
  $('tab-text').parentElement.addEventListener('keydown', (e) => {
    const keys = { ArrowLeft: 'text', ArrowRight: 'file', Home: 'text', End: 'file' };
    if (!(e.key in keys)) return;
    e.preventDefault();
    const next = e.key.startsWith('Arrow') ? (currentTab() === 'text' ? 'file' : 'text') : keys[e.key];
    selectTab(next, { focus: true });
  });
}

/**
 * What is chosen on the File tab: one file (sent as it is) or several files or a folder, each
 * `{ file, path }`, sent as one ZIP named `zipName`.
 */
function chooseFiles(entries, { zipName = null } = {}) {
  const list = entries ?? [];
  chosen = list.length === 0 ? null : list.length === 1 && !zipName ? { single: list[0].file } : { entries: list, zipName: zipName ?? 'files.zip' };
  show('chosen', !!chosen);
  show('drop', !chosen);
  show($('pick-folder').parentElement, !chosen);
  const ul = $('chosen-list');
  ul.replaceChildren();
  show(ul, false);
  setText('form-error', '');
  if (!chosen) return;
  const total = list.reduce((n, e) => n + e.file.size, 0);
  if (chosen.single) {
    setText('chosen-name', chosen.single.name || 'Pasted file');
    setText('chosen-size', formatBytes(total));
  } else {
    setText('chosen-name', chosen.zipName);
    setText('chosen-size', `${list.length} ${list.length === 1 ? 'file' : 'files'}, ${formatBytes(total)}, sent as one ZIP`);
    for (const e of list.slice(0, LIST_SHOWN)) {
      const li = document.createElement('li');
      li.textContent = `${e.path} (${formatBytes(e.file.size)})`;
      ul.append(li);
    }
    if (list.length > LIST_SHOWN) {
      const li = document.createElement('li');
      li.textContent = `and ${list.length - LIST_SHOWN} more`;
      ul.append(li);
    }
    show(ul, true);
  }
  selectTab('file');
  // Refused as soon as it is chosen, with the number the drop zone advertised.
  const refusal = config && fileTooLarge(total, config);
  if (refusal) setText('form-error', refusal.message);
}

/** Files chosen in the page's order of entries, as `{file, path}`. */
const asEntries = (files) => [...files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));

/** A folder's name from the first path of its entries. */
const folderName = (entries) => `${entries[0].path.split('/')[0] || 'files'}.zip`;

/** Every file under a dropped directory entry, depth first, as `{file, path}`. */
async function walkEntry(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\/+/, '') });
    return;
  }
  if (!entry.isDirectory) return;
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) await walkEntry(child, out);
  }
}

/** What was dropped: plain files, or folders walked through (`webkitGetAsEntry`). */
async function droppedEntries(dataTransfer) {
  const items = [...(dataTransfer.items ?? [])].filter((i) => i.kind === 'file');
  const roots = items.map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (roots.length === 0 || roots.every((r) => r.isFile)) {
    return { entries: asEntries(dataTransfer.files), folder: false };
  }
  const out = [];
  for (const root of roots) await walkEntry(root, out);
  return { entries: out, folder: roots.length === 1 && roots[0].isDirectory ? `${roots[0].name}.zip` : 'files.zip' };
}

function setupFilePicking() {
  const input = $('file');
  const folder = $('folder');
  $('drop').addEventListener('click', () => input.click());
  $('pick-folder').addEventListener('click', () => folder.click());
  input.addEventListener('change', () => input.files.length && chooseFiles(asEntries(input.files)));
  folder.addEventListener('change', () => {
    const entries = asEntries(folder.files);
    if (entries.length === 0) {
      setText('form-error', 'That folder has no files in it.');
      return;
    }
    chooseFiles(entries, { zipName: folderName(entries) });
  });
  $('chosen-clear').addEventListener('click', () => {
    input.value = '';
    folder.value = '';
    chooseFiles(null);
    $('drop').focus();
  });

  // Drag and drop anywhere on the page.
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e) || $('create').hidden) return;
    e.preventDefault();
    depth++;
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragover', (e) => {
    if (hasFiles(e) && !$('create').hidden) e.preventDefault();
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) document.body.classList.remove('dragging');
  });
  document.addEventListener('drop', async (e) => {
    depth = 0;
    document.body.classList.remove('dragging');
    if (!hasFiles(e) || $('create').hidden) return;
    e.preventDefault();
    const { entries, folder: zipName } = await droppedEntries(e.dataTransfer);
    if (entries.length === 0) {
      setText('form-error', 'Nothing to send: the folder is empty.');
      return;
    }
    chooseFiles(entries, { zipName: zipName || null });
  });

  // Paste anywhere: a file (an image copied to the clipboard too) goes to the File tab; text
  // outside a field goes to the Text tab.
  document.addEventListener('paste', (e) => {
    if ($('create').hidden || busy) return;
    const files = [...(e.clipboardData?.files ?? [])];
    if (files.length) {
      e.preventDefault();
      chooseFiles(asEntries(files.map((f) => (f.name ? f : new File([f], pastedName(f), { type: f.type })))));
      return;
    }
    const inField = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
    const text = e.clipboardData?.getData('text/plain');
    if (!inField && text) {
      e.preventDefault();
      selectTab('text');
      $('text').value = text;
      $('text').dispatchEvent(new Event('input'));
      $('text').focus();
    }
  });
}

/** A name for a pasted image that came without one: `pasted-<time>.png`. */
function pastedName(file) {
  const ext = (file.type.split('/')[1] || 'bin').replace(/[^a-z0-9]/g, '');
  return `pasted-${new Date().toISOString().replace(/[:.]/g, '-')}.${ext}`;
}

/** One-time and a download limit exclude each other, visibly: the one not in use is greyed out. */
function syncOptions() {
  const quick = currentTab() === 'text' && $('quick').checked;
  const once = $('once').checked;
  const limited = $('limit').value.trim() !== '';
  $('password').disabled = quick;
  $('expiry').disabled = quick;
  $('limit').disabled = once;
  $('once').disabled = limited && !once;
  $('limit-field').classList.toggle('inactive', once);
  $('once-field').classList.toggle('inactive', limited && !once);
  show('once-hint', limited && !once);
  if (quick) $('password').value = '';
  setText('limit-hint', once ? 'A one-time link allows one download; untick One-time to set a limit.' : 'Gone after this many downloads.');
  const parts = [quick ? '5 minutes' : expiryName($('expiry').value)];
  if (once) parts.push('one-time');
  else if (limited) parts.push(`${$('limit').value.trim()} downloads`);
  if ($('password').value) parts.push('password');
  setText('options-summary', `· ${parts.filter(Boolean).join(' · ')}`);
}

/**
 * What a phone shared to ferry (manifest share target): the service worker holds it for this
 * page, which takes it once. Files go to the File tab, a shared text or link to the Text tab.
 */
async function takeShared() {
  const flag = new URLSearchParams(location.search).get('shared');
  if (!flag) return;
  history.replaceState(null, '', '/');
  if (flag !== '1') {
    setText('form-error', 'What you shared did not reach this page. Choose it here instead.');
    return;
  }
  const reg = await streamingWorker();
  const worker = navigator.serviceWorker?.controller ?? reg?.active;
  if (!worker) return setText('form-error', 'What you shared did not reach this page. Choose it here instead.');
  const got = await new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => resolve(null), 5000);
    channel.port1.onmessage = ({ data }) => {
      clearTimeout(timer);
      resolve(data);
    };
    worker.postMessage({ type: 'take-shared' }, [channel.port2]);
  });
  if (got?.files?.length) chooseFiles(asEntries(got.files));
  else if (got?.text) {
    selectTab('text');
    $('text').value = got.text;
    $('text').dispatchEvent(new Event('input'));
  } else setText('form-error', 'What you shared did not reach this page. Choose it here instead.');
}

/** The options disclosure opens as the person last left it (closed at first). */
function setupDisclosure() {
  const details = $('options-more');
  const key = 'ferry.options-open';
  try {
    details.open = localStorage.getItem(key) === '1';
  } catch {
    // Storage refused (private mode): it starts closed.
  }
  details.addEventListener('toggle', () => {
    try {
      localStorage.setItem(key, details.open ? '1' : '0');
    } catch {
      // Not remembered, that is all.
    }
  });
}

function setupOptions(config) {
  const select = $('expiry');
  select.replaceChildren();
  for (const value of config.expiryOptions) {
    const option = document.createElement('option');
    option.value = value;
    option.textContent = expiryName(value);
    select.append(option);
  }
  select.value = config.defaultExpiry ?? config.expiryOptions.at(-1);
  for (const id of ['quick', 'once', 'expiry']) $(id).addEventListener('change', syncOptions);
  for (const id of ['limit', 'password']) $(id).addEventListener('input', syncOptions);
  const show = $('password-show');
  show.addEventListener('click', () => {
    const visible = $('password').type === 'password';
    $('password').type = visible ? 'text' : 'password';
    show.textContent = visible ? 'Hide' : 'Show';
    show.setAttribute('aria-pressed', String(visible));
  });
  $('text').addEventListener('input', () => {
    const n = new TextEncoder().encode($('text').value).length;
    const over = n > config.maxTextSize;
    setText('text-count', n ? `${formatBytes(n)} of text${over ? ` — more than the ${formatBytes(config.maxTextSize)} this server takes` : ''}` : '');
    $('text-count').classList.toggle('error', over);
  });
  setText('max-file', formatBytes(config.maxUploadSize));
  setText('max-text', formatBytes(config.maxTextSize));
}

function readOptions() {
  const raw = $('limit').value.trim();
  const limit = raw === '' ? null : Number(raw);
  if (!$('once').checked && limit !== null && !(Number.isInteger(limit) && limit >= 1 && limit <= 10000)) {
    throw new UserError('limit', 'The download limit must be a whole number from 1 to 10000.');
  }
  return {
    expiry: $('expiry').value,
    oneTime: $('once').checked,
    maxDownloads: $('once').checked ? null : limit,
    password: $('password').value,
    quick: currentTab() === 'text' && $('quick').checked,
  };
}

function explain(e) {
  if (e instanceof UserError) return e.message;
  if (e instanceof ApiError) {
    if (e.network) return 'The network failed. Check your connection and try again.';
    if (e.status === 429) return `Too many uploads from here just now; try again in ${Math.ceil(e.retryAfter ?? 60)} seconds.`;
    if (e.status === 413) return 'The server refused this size.';
    if (e.status === 404) return 'The upload expired on the server. Share it again.';
    return e.message;
  }
  return `Something went wrong: ${e.message}`;
}

/**
 * Run one share (or resume), from the progress screen to the result. A failure returns to the
 * create screen with its explanation; `onError` may take it instead (returning true).
 */
async function run(name, work, options, onError = () => false) {
  busy = true;
  const hooks = progressScreen(name);
  try {
    const done = await work(hooks);
    resultScreen({ ...done, maxDownloads: options?.maxDownloads ?? null }, { onNew: () => reset() });
  } catch (e) {
    screen('create');
    await offerResume();
    if (e instanceof Cancelled || hooks.cancelled()) setText('form-error', 'Cancelled. Nothing was kept on the server.');
    else if (!(await onError(e))) setText('form-error', explain(e));
  } finally {
    busy = false;
  }
}

function reset() {
  $('share-form').reset();
  chooseFiles(null);
  $('text').dispatchEvent(new Event('input'));
  syncOptions();
  screen('create');
  offerResume();
}

async function submit(e) {
  e.preventDefault();
  if (busy) return;
  setText('form-error', '');
  let options;
  try {
    options = readOptions();
  } catch (err) {
    setText('form-error', explain(err));
    return;
  }
  if (currentTab() === 'file') {
    if (!chosen) {
      setText('form-error', 'Choose or drop a file first.');
      $('drop').focus();
      return;
    }
    let source;
    try {
      source = chosen.single ?? archiveOf(chosen.entries, chosen.zipName);
    } catch (err) {
      setText('form-error', err.message);
      return;
    }
    await run(source.name, (hooks) => shareFile(source, options, config, hooks), options);
  } else {
    const text = $('text').value;
    if (!text) {
      setText('form-error', 'Type or paste some text first.');
      $('text').focus();
      return;
    }
    await run(options.quick ? 'Quick share' : 'Text', (hooks) => shareText(text, options, config, hooks), options);
  }
}

/** Unfinished uploads older than this are given up unasked (the server abandons idle ones after a day). */
const RESUME_MAX_AGE = 7 * 24 * 3600 * 1000;

async function offerResume() {
  const records = await unfinishedUploads();
  for (const old of records.filter((r) => Date.now() - r.createdAt > RESUME_MAX_AGE)) await discardUpload(old);
  const [record] = records.filter((r) => Date.now() - r.createdAt <= RESUME_MAX_AGE);
  show('resume-offer', !!record);
  if (!record) return;
  setText('resume-name', record.name);
  setText('resume-size', formatBytes(record.size));
  setText('resume-error', '');
  const input = $('resume-file');
  $('resume-pick').onclick = () => input.click();
  input.onchange = async () => {
    const file = input.files[0];
    input.value = '';
    if (!file) return;
    await run(file.name, (hooks) => resumeFile(record, file, hooks), record.options, async (err) => {
      const startAgain = err instanceof UserError && (err.code === 'nothing_to_prove' || err.code === 'expired');
      if (startAgain) {
        await discardUpload(record);
        show('resume-offer', false);
        chooseFiles(asEntries([file]));
        setText('form-error', err.message);
      } else {
        setText('resume-error', explain(err));
      }
      return true;
    });
  };
  $('resume-discard').onclick = async () => {
    await discardUpload(record);
    await offerResume();
  };
}

function setupCodeForm() {
  $('code-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const parsed = parseTyped($('code').value);
    if (!parsed) {
      setText('code-error', 'Type the 12 characters of a code (like AB12CD · XY34ZW) or paste a whole link.');
      return;
    }
    location.assign(`/${parsed.kind}/${parsed.id}${parsed.secret ? `#${parsed.secret}` : ''}`);
  });
}

export async function startCreate() {
  screen('create', { focus: false });
  setupTabs();
  setupFilePicking();
  setupCodeForm();
  setupDisclosure();
  // Registered early, so a phone that installs ferry can share to it (manifest share target).
  streamingWorker();
  $('share-form').addEventListener('submit', submit);
  $('share').disabled = true;
  try {
    config = await serverConfig();
  } catch (e) {
    setText('form-error', `The server did not answer: ${explain(e)} Reload to try again.`);
    return;
  }
  setupOptions(config);
  syncOptions();
  $('share').disabled = false;
  await takeShared();
  await offerResume();
}
