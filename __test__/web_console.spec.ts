/// <reference lib="dom" />
// The web console in a real browser (Debian's chromium, driven by puppeteer-core): the
// test kernel's transcript on the page, typing reaching the guest, two viewers, and the
// refusals (no token, a WebSocket from another origin).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import WsClient from 'ws';

import { bootLinux, serveConsole } from '../ts';
import { describeKvm } from './helpers';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const KERNEL = join(__dirname, '..', 'guests', 'test_kernel.elf');
const CLI = join(__dirname, '..', 'dist', 'cli.js');
const SCREENSHOT = join(__dirname, '..', 'media', 'web-console.png'); // shown in docs/linux.md

/** The text of the terminal on `page` (xterm.js' DOM renderer: one div per row). */
const screen = (page: Page) =>
  page.evaluate(() =>
    Array.from(document.querySelectorAll('.xterm-rows > div'))
      .map((row) => row.textContent ?? '')
      .join('\n'),
  );

const until = (page: Page, text: string) =>
  page.waitForFunction(
    (t) =>
      Array.from(document.querySelectorAll('.xterm-rows > div'))
        .map((row) => row.textContent ?? '')
        .join('\n')
        .includes(t),
    { timeout: 20000 },
    text,
  );

/** The status of a plain GET of `url`. */
const statusOf = (url: string) =>
  new Promise<number>((resolve, reject) => {
    request(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    })
      .on('error', reject)
      .end();
  });

describeKvm('web console', () => {
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 60000);

  afterAll(async () => {
    await browser?.close();
  });

  test('two viewers see the transcript; what one types reaches the guest and both see its echo', async () => {
    const linux = bootLinux({ kernel: KERNEL, cmdline: 'echo', memory: '32M' });
    const web = await serveConsole(linux);
    expect(web.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{48}\/$/);
    const done = linux.start();
    const first = await browser.newPage();
    await first.setViewport({ width: 900, height: 420 });
    await first.goto(web.url);
    await until(first, 'cmdline: echo');
    const second = await browser.newPage();
    await second.goto(web.url);
    await until(second, 'cmdline: echo'); // replayed from the scrollback
    await first.bringToFront();
    await first.click('#terminal');
    await first.keyboard.type('hello from chromium');
    await first.keyboard.press('Enter');
    await until(first, 'HELLO FROM CHROMIUM');
    // A page in the background renders nothing (no animation frames): show it.
    await second.bringToFront();
    await until(second, 'HELLO FROM CHROMIUM');
    await first.bringToFront();
    expect((await done).kind).toBe('SystemEventReset');
    await until(first, 'bye');
    const text = await screen(first);
    expect(text).toContain('vcpu-test-kernel');
    expect(text).toContain('boot_params: ok');
    await first.screenshot({ path: SCREENSHOT });
    await web.close();
    linux.close();
  }, 60000);

  test('npx vcpu boot --web prints the URL; the page serves while the terminal keeps its console', async () => {
    const cli = spawn(
      process.execPath,
      [CLI, 'boot', '--kernel', KERNEL, '--mem', '32M', '--cmdline', 'echo', '--web', '127.0.0.1:0'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (c) => (stdout += c));
    const url = await new Promise<string>((resolve, reject) => {
      cli.stderr.on('data', (c) => {
        stderr += c;
        const m = /web console at (http:\/\/\S+)/.exec(stderr);
        if (m) resolve(m[1]);
      });
      cli.on('exit', () => reject(new Error(`exited early: ${stderr}`)));
    });
    expect(await statusOf(url)).toBe(200);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{48}\/$/);
    cli.stdin.end('typed in the terminal\n');
    const code = await new Promise<number | null>((resolve) => cli.on('exit', resolve));
    expect(code).toBe(0);
    expect(stdout).toContain('TYPED IN THE TERMINAL\nbye\n');
  }, 30000);

  test('without the token: 404 for the page and the WebSocket; another origin: 403', async () => {
    const linux = bootLinux({ kernel: KERNEL, cmdline: 'echo', memory: '32M' });
    const web = await serveConsole(linux);
    const url = new URL(web.url);
    expect(await statusOf(`${url.origin}/`)).toBe(404);
    expect(await statusOf(`${url.origin}/xterm.js`)).toBe(404);
    expect(await statusOf(`${url.origin}/${'0'.repeat(48)}/`)).toBe(404);
    expect(await statusOf(web.url)).toBe(200);
    expect(await statusOf(`${web.url}xterm.js`)).toBe(200);
    const refused = (address: string, origin: string) =>
      new Promise<number>((resolve) => {
        const ws = new WsClient(address, { origin });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('error', () => resolve(-1));
      });
    const wsUrl = `ws://${url.host}${url.pathname}ws`;
    expect(await refused(`ws://${url.host}/ws`, url.origin)).toBe(404);
    expect(await refused(wsUrl, 'http://evil.example')).toBe(403);
    expect(await refused(wsUrl, url.origin)).toBe(101);
    await web.close();
    linux.close();
  });

  test('a page of another origin cannot open the WebSocket from the browser', async () => {
    const linux = bootLinux({ kernel: KERNEL, cmdline: 'echo', memory: '32M' });
    const web = await serveConsole(linux);
    const otherLinux = bootLinux({ kernel: KERNEL, cmdline: 'echo', memory: '32M' });
    const other = await serveConsole(otherLinux);
    const page = await browser.newPage();
    // A page served from another origin (another port) that knows the URL.
    await page.goto(other.url);
    const wsUrl = web.url.replace(/^http/, 'ws') + 'ws';
    const outcome = await page.evaluate(
      (u) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(u);
          ws.onopen = () => resolve('open');
          ws.onerror = () => resolve('refused');
          ws.onclose = () => resolve('refused');
          setTimeout(() => resolve('no answer in 10 s'), 10000);
        }),
      wsUrl,
    );
    expect(outcome).toBe('refused');
    await page.close();
    await other.close();
    otherLinux.close();
    await web.close();
    linux.close();
  });
});
