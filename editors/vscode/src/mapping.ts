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
  /** Branch sides that ran, and all branch sides (two per branch, one per `match` arm); absent
   * from older servers. */
  branches_covered?: number;
  branches_total?: number;
  tests: string[];
}

export interface BranchPayload {
  construct: 'if' | 'while' | 'short_circuit' | 'guard' | 'if_let' | 'let_else' | 'try';
  /** `taken` is the condition's true side; else the two sides' meaning is unknown. */
  oriented: boolean;
  taken: number;
  not_taken: number;
}

/** A `match` shown on the line: each arm by its first line (0-based) and how often it was chosen. */
export interface MatchPayload {
  arms: { line: number; hits: number }[];
}

export interface UpdatePayload {
  version: number;
  tests: TestItemPayload[];
  files: FileTotalsPayload[];
}

export interface FileLinesPayload {
  uri: string;
  lines: { line: number; hits: number; branches?: BranchPayload[]; matches?: MatchPayload[] }[];
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

/** A branch side as VS Code's `BranchCoverage` wants it: its count and a label that reads in
 * "the ${label} branch was not taken". */
export interface BranchSide {
  executed: number;
  label: string;
}

const CONSTRUCTS: Record<BranchPayload['construct'], string> = {
  if: '`if`',
  while: '`while`',
  short_circuit: '`&&`/`||` operand',
  guard: 'match guard',
  if_let: '`let` pattern',
  let_else: '`let … else`',
  try: '`?`',
};

/** The two sides of each branch of a line, in order (with the branch's number when a line has
 * several), then each arm of its `match`es. */
export function branchSides(branches: BranchPayload[], matches: MatchPayload[] = []): BranchSide[] {
  const sides: BranchSide[] = [];
  branches.forEach((branch, i) => {
    const what = CONSTRUCTS[branch.construct] + (branches.length > 1 ? ` #${i + 1}` : '');
    const [yes, no] = !branch.oriented
      ? ['one', 'other']
      : branch.construct === 'try'
        ? ['early return', 'value']
        : branch.construct === 'if_let' || branch.construct === 'let_else'
          ? ['match', 'no match']
          : ['true', 'false'];
    sides.push({ executed: branch.taken, label: `${what} ${yes}` });
    sides.push({ executed: branch.not_taken, label: `${what} ${no}` });
  });
  for (const found of matches) {
    for (const arm of found.arms) {
      sides.push({ executed: arm.hits, label: `\`match\` arm at line ${arm.line + 1}` });
    }
  }
  return sides;
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
