/**
 * The one headless Chromium setup of the browser check (`test/report-browser.test.ts`) and of
 * `scripts/screenshot-report.ts`: Debian's `chromium` package driven by playwright-core, offline,
 * with a throwaway profile. `.ci/run` installs the package when it is missing.
 */
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { existsSync } from 'node:fs';

export const CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
] as const;

/** Why the browser check cannot run here, or undefined when it can. */
export function chromiumMissing(): string | undefined {
  if (existsSync(CHROMIUM_PATH)) return undefined;
  return `${CHROMIUM_PATH} not found: install Debian's chromium package (apt-get install -y chromium; .ci/run does) to run the report's browser check`;
}

export interface HeadlessChromium {
  readonly browser: Browser;
  /** Offline, fixed viewport and colour scheme. */
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/**
 * A fresh browser (playwright gives each launch its own temporary profile, removed on close) and
 * an offline context: a report that tried to load anything from outside would fail to, visibly.
 */
export async function launchChromium(options: { colorScheme?: 'light' | 'dark'; width?: number; height?: number } = {}): Promise<HeadlessChromium> {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS] });
  try {
    const context = await browser.newContext({
      offline: true,
      colorScheme: options.colorScheme ?? 'light',
      viewport: { width: options.width ?? 1280, height: options.height ?? 900 },
    });
    return { browser, context, close: () => browser.close() };
  } catch (error) {
    await browser.close();
    throw error;
  }
}
