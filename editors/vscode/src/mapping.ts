// The server's coverlay protocol (README: "coverlay's own protocol") mapped to plain values the
// extension turns into VS Code objects. No `vscode` import: unit-tested with `node --test`.

export interface TestItemPayload {
  id: string;
  label: string;
  uri: string | null;
  line: number | null;
  outcome: 'passed' | 'failed' | 'ignored' | 'timed_out' | 'crashed';
  duration_ms: number;
  message: string | null;
}

export interface FileTotalsPayload {
  uri: string;
  covered: number;
  coverable: number;
  tests: string[];
}

export interface UpdatePayload {
  version: number;
  tests: TestItemPayload[];
  files: FileTotalsPayload[];
}

export interface FileLinesPayload {
  uri: string;
  lines: { line: number; hits: number }[];
  functions: { name: string; line: number; hits: number }[];
}

/** What a test run reports for a test. */
export type Verdict =
  | { kind: 'passed'; duration: number }
  | { kind: 'failed'; duration: number; message: string }
  | { kind: 'errored'; duration: number; message: string }
  | { kind: 'skipped' };

export function verdict(test: TestItemPayload): Verdict {
  const duration = test.duration_ms;
  switch (test.outcome) {
    case 'passed':
      return { kind: 'passed', duration };
    case 'failed':
      return { kind: 'failed', duration, message: test.message ?? 'test failed' };
    case 'timed_out':
      return { kind: 'errored', duration, message: test.message ?? 'timed out' };
    case 'crashed':
      return { kind: 'errored', duration, message: test.message ?? 'the test process crashed' };
    default:
      return { kind: 'skipped' };
  }
}

/** Line coverage of the whole workspace, as the status bar shows it. */
export function workspacePercent(update: UpdatePayload): string {
  const covered = update.files.reduce((sum, f) => sum + f.covered, 0);
  const coverable = update.files.reduce((sum, f) => sum + f.coverable, 0);
  if (coverable === 0) {
    return '–';
  }
  return `${((100 * covered) / coverable).toFixed(1)}%`;
}

/** Tests grouped by the file that holds them (those without a location under `''`). */
export function testsByFile(update: UpdatePayload): Map<string, TestItemPayload[]> {
  const byFile = new Map<string, TestItemPayload[]>();
  for (const test of update.tests) {
    const key = test.uri ?? '';
    const list = byFile.get(key) ?? [];
    list.push(test);
    byFile.set(key, list);
  }
  for (const list of byFile.values()) {
    list.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || a.id.localeCompare(b.id));
  }
  return byFile;
}

/** Tests the user picked (by id; none: all) as the server's rerun command arguments. */
export function rerunArguments(picked: string[]): { command: string; arguments: string[] } {
  if (picked.length === 0) {
    return { command: 'coverlay.rerunAll', arguments: [] };
  }
  return { command: 'coverlay.rerunTest', arguments: [...new Set(picked)].sort() };
}

/** The server's settings (README "Settings") among the extension's; its own (`server.path`) stay. */
export const SERVER_SETTINGS = ['severity', 'inlayHints', 'codeLens', 'cargoArgs', 'countCap', 'testTimeout', 'excludedPaths', 'doctests'];

export function serverSettings(read: (key: string) => unknown): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of SERVER_SETTINGS) {
    const value = read(key);
    if (value !== undefined && value !== null) {
      settings[key] = value;
    }
  }
  return settings;
}
