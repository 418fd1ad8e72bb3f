// coverlay for VS Code: starts `coverlay lsp`, declares the `experimental.coverlay` capability,
// and shows what the server reports through VS Code's native test and coverage API (gutter, Test
// Coverage view, Explorer percentages, per-test filter), plus a status bar item.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  ClientCapabilities,
  FeatureState,
  LanguageClient,
  StaticFeature,
} from 'vscode-languageclient/node';

import {
  FileLinesPayload,
  branchSides,
  UpdatePayload,
  rerunArguments,
  serverSettings,
  testsByFile,
  verdict,
  workspacePercent,
} from './mapping';

/** Asks the server for coverlay's own protocol (`coverlay/didUpdate`, `coverlay/fileCoverage`). */
class CoverlayProtocol implements StaticFeature {
  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.experimental = { ...(capabilities.experimental ?? {}), coverlay: true };
  }
  initialize(): void {}
  getState(): FeatureState {
    return { kind: 'static' };
  }
  clear(): void {}
}

/** The configured binary, else the one bundled in the extension, else `coverlay` on PATH. */
function findServer(context: vscode.ExtensionContext): { path?: string; tried: string[] } {
  const configured = vscode.workspace.getConfiguration('coverlay').get<string | null>('server.path');
  if (configured) {
    return { path: fs.existsSync(configured) ? configured : undefined, tried: [configured] };
  }
  const bundled = context.asAbsolutePath(path.join('server', 'coverlay'));
  if (fs.existsSync(bundled)) {
    // An unpacked .vsix may lose the executable bit.
    fs.chmodSync(bundled, 0o755);
  }
  const tried = [bundled];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter((d) => d)) {
    tried.push(path.join(dir, 'coverlay'));
  }
  return { path: tried.find((candidate) => fs.existsSync(candidate)), tried };
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const server = findServer(context);
  if (!server.path) {
    void vscode.window.showErrorMessage(
      `coverlay: no coverlay binary found (looked at ${server.tried.slice(0, 3).join(', ')}…). ` +
        'Install it (`cargo install --path server` in the coverlay repository) or set "coverlay.server.path".',
    );
    return;
  }
  const settings = () => {
    const configuration = vscode.workspace.getConfiguration('coverlay');
    return serverSettings((key) => configuration.get(key));
  };
  const client = new LanguageClient(
    'coverlay',
    'coverlay',
    { command: server.path, args: ['lsp'] },
    {
      documentSelector: [{ scheme: 'file', language: 'rust' }],
      initializationOptions: settings(),
    },
  );
  client.registerFeature(new CoverlayProtocol());
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('coverlay')) {
        void client.sendNotification('workspace/didChangeConfiguration', {
          settings: { coverlay: settings() },
        });
      }
    }),
  );

  const controller = vscode.tests.createTestController('coverlay', 'coverlay');
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
  status.text = '$(sync~spin) coverlay';
  status.tooltip = 'coverlay: the first run is on its way';
  status.command = 'testing.coverageAll';
  status.show();
  context.subscriptions.push(controller, status);

  let latest: UpdatePayload | undefined;
  // Run handlers waiting for the server's next update (their run publishes it).
  const waiting = new Set<(update: UpdatePayload) => boolean>();
  const items = new Map<string, vscode.TestItem>();

  const syncItems = (update: UpdatePayload) => {
    items.clear();
    const roots: vscode.TestItem[] = [];
    for (const [uri, tests] of testsByFile(update)) {
      const fileUri = uri ? vscode.Uri.parse(uri) : undefined;
      const label = fileUri ? vscode.workspace.asRelativePath(fileUri) : 'tests without a location';
      const root = controller.createTestItem(`file:${uri}`, label, fileUri);
      for (const test of tests) {
        const item = controller.createTestItem(test.id, test.label, test.uri ? vscode.Uri.parse(test.uri) : undefined);
        if (test.line !== null) {
          item.range = new vscode.Range(test.line, 0, test.line, 0);
        }
        root.children.add(item);
        items.set(test.id, item);
      }
      roots.push(root);
    }
    controller.items.replace(roots);
  };

  const publish = (run: vscode.TestRun, update: UpdatePayload, coverage: boolean) => {
    for (const test of update.tests) {
      const item = items.get(test.id);
      if (!item) {
        continue;
      }
      const result = verdict(test);
      switch (result.kind) {
        case 'passed':
          run.passed(item, result.duration);
          break;
        case 'failed':
          run.failed(item, new vscode.TestMessage(result.message), result.duration);
          break;
        case 'errored':
          run.errored(item, new vscode.TestMessage(result.message), result.duration);
          break;
        case 'skipped':
          run.skipped(item);
          break;
      }
    }
    if (coverage) {
      for (const file of update.files) {
        const covering = file.tests
          .map((id) => items.get(id))
          .filter((item): item is vscode.TestItem => item !== undefined);
        run.addCoverage(
          new vscode.FileCoverage(
            vscode.Uri.parse(file.uri),
            new vscode.TestCoverageCount(file.covered, file.coverable),
            file.branches_total
              ? new vscode.TestCoverageCount(file.branches_covered ?? 0, file.branches_total)
              : undefined,
            undefined,
            covering,
          ),
        );
      }
    }
  };

  /** The first update newer than `version`, or undefined when the run is cancelled. */
  const nextUpdate = (version: number, token: vscode.CancellationToken) =>
    new Promise<UpdatePayload | undefined>((resolve) => {
      const waiter = (update: UpdatePayload) => {
        if (update.version <= version) {
          return false;
        }
        waiting.delete(waiter);
        resolve(update);
        return true;
      };
      waiting.add(waiter);
      token.onCancellationRequested(() => {
        waiting.delete(waiter);
        resolve(undefined);
      });
    });

  const runHandler =
    (coverage: boolean) => async (request: vscode.TestRunRequest, token: vscode.CancellationToken) => {
      const picked: string[] = [];
      const excluded = new Set((request.exclude ?? []).map((item) => item.id));
      const collect = (item: vscode.TestItem) => {
        if (excluded.has(item.id)) {
          return;
        }
        if (items.has(item.id)) {
          picked.push(item.id);
        }
        item.children.forEach(collect);
      };
      (request.include ?? []).forEach(collect);
      const next = nextUpdate(latest?.version ?? 0, token);
      const { command, arguments: args } = rerunArguments(picked);
      await client.sendRequest('workspace/executeCommand', { command, arguments: args });
      const update = await next;
      if (!update) {
        return;
      }
      const run = controller.createTestRun(request, 'coverlay', false);
      publish(run, update, coverage);
      run.end();
    };
  controller.createRunProfile('Run', vscode.TestRunProfileKind.Run, runHandler(false), true);
  const coverageProfile = controller.createRunProfile(
    'Run with coverage',
    vscode.TestRunProfileKind.Coverage,
    runHandler(true),
    true,
  );
  const details = async (uri: vscode.Uri, testId: string | undefined) => {
    const payload: FileLinesPayload = await client.sendRequest('coverlay/fileCoverage', {
      uri: uri.toString(),
      testId,
    });
    const found: vscode.FileCoverageDetail[] = payload.lines.map((line) => {
      const at = new vscode.Position(line.line, 0);
      const branches = branchSides(line.branches ?? [], line.matches ?? []).map(
        (side) => new vscode.BranchCoverage(side.executed, at, side.label),
      );
      return new vscode.StatementCoverage(line.hits, at, branches.length > 0 ? branches : undefined);
    });
    for (const fn of payload.functions) {
      found.push(new vscode.DeclarationCoverage(fn.name, fn.hits, new vscode.Position(fn.line, 0)));
    }
    return found;
  };
  coverageProfile.loadDetailedCoverage = (_run, file) => details(file.uri, undefined);
  coverageProfile.loadDetailedCoverageForTest = (_run, file, test) => details(file.uri, test.id);

  context.subscriptions.push(
    vscode.workspace.onDidSaveTextDocument((document) => {
      if (document.languageId === 'rust') {
        status.text = `$(sync~spin) coverlay ${latest ? workspacePercent(latest) : ''}`;
      }
    }),
  );
  client.onNotification('coverlay/didUpdate', (update: UpdatePayload) => {
    latest = update;
    syncItems(update);
    status.text = `$(beaker) coverlay ${workspacePercent(update)}`;
    const failed = update.tests.filter((t) => t.outcome !== 'passed' && t.outcome !== 'ignored').length;
    status.tooltip = `coverlay: ${workspacePercent(update)} of lines covered, ${update.tests.length} tests, ${failed} not passing`;
    let taken = false;
    for (const waiter of [...waiting]) {
      taken = waiter(update) || taken;
    }
    if (taken) {
      return;
    }
    // A run the server started itself (a save, the first run): shown as a coverage run.
    const run = controller.createTestRun(
      new vscode.TestRunRequest(undefined, undefined, coverageProfile),
      'coverlay',
      false,
    );
    publish(run, update, true);
    run.end();
  });
  context.subscriptions.push(client);
  await client.start();
}

export function deactivate(): void {}
