// Runs the official Twilio Voice JS SDK in headless Chromium and lets a test drive it.
//
// Usage: node runner.mjs [--chromium /usr/bin/chromium] [--fake-audio tone.wav]
//
// It serves page.html, harness.js and the SDK bundle from 127.0.0.1 (a random port),
// launches Chromium through playwright-core (no browser download: the Debian package),
// and then reads one JSON command per line on stdin and answers one JSON line on stdout:
//
//   {"id": 1, "fn": "register", "args": []}  ->  {"id": 1, "ok": true, "result": "registered"}
//
// `fn` is a function of window.harness (see harness.js); a few are the runner's own:
// "blocked" (requests to non-loopback hosts that were refused) and "close". The first
// line it prints is {"ready": true, "page": URL, "sdk": VERSION}. Page console output goes
// to stderr. Everything stays on 127.0.0.1: the page, the SDK's sounds (a local silent
// WAV) and, through the test's options, the gateway; any other request is aborted.
import { createServer } from 'node:http';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const FILES = {
  '/page.html': ['page.html', 'text/html'],
  '/harness.js': ['harness.js', 'text/javascript'],
  '/node_modules/@twilio/voice-sdk/dist/twilio.min.js': [
    'node_modules/@twilio/voice-sdk/dist/twilio.min.js', 'text/javascript'],
};
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

function parseArgs(argv) {
  const options = { chromium: '/usr/bin/chromium', fakeAudio: null };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--chromium') options.chromium = argv[++i];
    else if (argv[i] === '--fake-audio') options.fakeAudio = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return options;
}

/** A short silent 8 kHz PCM WAV: what the SDK plays for ringtones and DTMF sounds. */
function silentWav() {
  const samples = 800;
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + samples * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22); buf.writeUInt32LE(8000, 24); buf.writeUInt32LE(16000, 28);
  buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(samples * 2, 40);
  return buf;
}

async function serve() {
  const silence = silentWav();
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname;
    if (path === '/silence.wav') {
      res.writeHead(200, { 'content-type': 'audio/wav' });
      res.end(silence);
      return;
    }
    const entry = FILES[path];
    if (!entry) {
      res.writeHead(404).end('not found');
      return;
    }
    try {
      const body = await readFile(join(HERE, entry[0]));
      res.writeHead(200, { 'content-type': entry[1] });
      res.end(body);
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function chromiumArgs(options) {
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--ignore-certificate-errors',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    // WebAudio analysis of the remote stream without a user gesture.
    '--autoplay-policy=no-user-gesture-required',
    // In the test's namespace only `lo` exists and Chrome ignores loopback for ICE unless
    // told otherwise: without this it gathers nothing and no media flows (signaling still
    // reaches `accept`, which is why the test checks the audio itself).
    '--allow-loopback-in-peer-connection',
    // No DNS at all: only the IP literals the test uses resolve.
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1',
  ];
  if (options.fakeAudio) args.push(`--use-file-for-fake-audio-capture=${options.fakeAudio}`);
  return args;
}

function write(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const server = await serve();
  const origin = `http://127.0.0.1:${server.address().port}`;
  const profile = await mkdtemp(join(tmpdir(), 'softphone-chromium-'));
  const blocked = [];
  let context = null;
  const shutdown = async () => {
    if (context) await context.close().catch(() => {});
    server.close();
    await rm(profile, { recursive: true, force: true });
  };
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: options.chromium,
      headless: true,
      args: chromiumArgs(options),
      ignoreHTTPSErrors: true,
      permissions: ['microphone'],
    });
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.protocol === 'data:' || url.protocol === 'blob:' || LOOPBACK_HOSTS.has(url.hostname)) {
        return route.continue();
      }
      blocked.push(url.href);
      return route.abort('blockedbyclient');
    });
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (msg) => process.stderr.write(`[page ${msg.type()}] ${msg.text()}\n`));
    page.on('pageerror', (err) => process.stderr.write(`[page error] ${err}\n`));
    await page.goto(`${origin}/page.html`);
    const sdk = await page.evaluate(() => window.Twilio.Device.version);
    write({ ready: true, page: `${origin}/page.html`, origin, sdk });

    const lines = createInterface({ input: process.stdin });
    for await (const line of lines) {
      if (!line.trim()) continue;
      const { id, fn, args } = JSON.parse(line);
      if (fn === 'close') {
        write({ id, ok: true, result: null });
        break;
      }
      if (fn === 'blocked') {
        write({ id, ok: true, result: blocked });
        continue;
      }
      // Commands run concurrently (a waitEvent must not hold up an accept); the id pairs
      // each answer with its command.
      page.evaluate(([name, params]) => window.harness[name](...params), [fn, args || []])
        .then((result) => write({ id, ok: true, result: result === undefined ? null : result }))
        .catch((err) => write({ id, ok: false, error: String(err && err.message || err) }));
    }
  } finally {
    await shutdown();
  }
}

main().catch((err) => {
  process.stderr.write(`runner failed: ${err && err.stack || err}\n`);
  process.exit(1);
});
