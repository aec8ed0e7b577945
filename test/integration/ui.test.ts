/**
 * The Temporal UI as a person sees it, in headless Chromium (Debian's `chromium`, driven by playwright-core): a
 * dev server with its UI, a session on it, and the UI's workflow list and session page showing the session with its
 * summary. Skipped, saying why, only when no Chromium is installed (scripts/setup installs it with apt).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { Browser } from 'playwright-core';
import { reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { freePort, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { startWorker, testAgent, testClient, uniqueQueue, waitFor, waitIdle } from '../helpers/env.js';
import { TandemClient } from '../../src/client/index.js';
import { repoRoot } from '../helpers/cli.js';

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
if (!chromium) console.warn('ui.test.ts skipped: no Chromium installed (scripts/setup installs Debian\'s chromium as root)');

describe.skipIf(!chromium)('Temporal UI in headless Chromium', () => {
  const queue = uniqueQueue('ui');
  let server: DevServer;
  let model: MessagesServer;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let browser: Browser;

  beforeAll(async () => {
    server = await startDevServer({ cli: inject('temporalCli'), port: await freePort(), uiPort: await freePort() });
    model = await startMessagesServer();
    worker = await startWorker(queue, model.url, server.address);
    const { chromium: pw } = await import('playwright-core');
    browser = await pw.launch({ executablePath: chromium, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  });

  afterAll(async () => {
    await browser?.close();
    await worker?.shutdown();
    await worker?.done;
    await model?.close();
    await server?.stop();
  });

  it('the workflow list shows the session with its status and agent; its page shows summary, details and step summaries', async () => {
    model.push(reply(toolUse('bash', { command: 'echo seen-in-the-ui' }, 'tu_ui')), reply('Shown.'));
    const client = await testClient(server.address);
    const tandem = new TandemClient(client, queue);
    const title = 'Fix the flaky test in calc.py';
    const id = await tandem.start({ agent: testAgent({ name: 'ui-agent' }), message: 'fix it', title });
    await waitIdle(client.workflow.getHandle(id), 'end_turn', 2);

    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const shots = join(repoRoot, '.tandem', 'ui-test');
    mkdirSync(shots, { recursive: true });

    // The workflow list, with Tandem's search attributes added as columns the way a user adds them.
    await page.goto(`${server.uiUrl}/namespaces/default/workflows`);
    await page.getByText(id).first().waitFor({ timeout: 30_000 });
    await page.locator('[data-testid=workflows-summary-table-configuration-button]').click();
    for (const column of ['TandemStatus', 'TandemAgent']) {
      const entry = page.getByText(column, { exact: true }).locator('xpath=..');
      await entry.getByRole('button').first().click();
    }
    await page.mouse.click(200, 700); // outside the drawer: closes it
    await page.locator('th', { hasText: 'TandemStatus' }).first().waitFor({ timeout: 10_000 });
    const row = page.locator('tr', { hasText: id });
    await row.getByText('ui-agent').waitFor({ timeout: 30_000 });
    await page.screenshot({ path: join(shots, 'list.png') });
    const rowText = await row.innerText();
    expect(rowText).toContain('agentSession');
    expect(rowText).toMatch(/\bidle\b/);
    expect(rowText).toContain('ui-agent');

    // The session's page: summary, details and current details, and the tool activity's summary.
    await page.goto(`${server.uiUrl}/namespaces/default/workflows/${id}`);
    await page.getByText('execute • bash: echo seen-in-the-ui').first().waitFor({ timeout: 30_000 });
    await page.screenshot({ path: join(shots, 'session.png') });
    await page.getByText('User Metadata', { exact: true }).first().click();
    await page.getByText('Current Details').first().waitFor();
    // The UI renders the markdown of summaries and details in sandboxed frames: read the text of every frame.
    const body = await waitFor(
      async () => (await Promise.all(page.frames().map((f) => f.locator('body').innerText().catch(() => '')))).join('\n'),
      (t) => /idle \(end_turn\) · turn 2/.test(t),
      30_000,
      'the current details to render',
    );
    await page.screenshot({ path: join(shots, 'metadata.png') });
    expect(body).toContain('Fix the flaky test in calc.py');
    expect(body).toMatch(/agent ui-agent · model claude-sonnet-5-5/);
    expect(body).toMatch(/idle \(end_turn\) · turn 2 · \d+ in \/ \d+ out tokens · last step: model call 2/);
    expect(body).toContain('bash: echo seen-in-the-ui');
    await page.close();
    await client.workflow.getHandle(id).cancel();
    model.assertDone();
  });
});
