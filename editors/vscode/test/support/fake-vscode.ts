/**
 * A small stand-in for the `vscode` module: enough surface for the extension's UI glue, with
 * every user-visible effect (messages, terminals, quick picks, progress) recorded in `fake`
 * and every user answer scripted through it.
 */

export interface RecordedTerminal {
  name?: string;
  shellPath?: string;
  shellArgs?: string[] | string;
  cwd?: string;
  shown: boolean;
  sentText: string[];
}

export interface RecordedMessage {
  level: "info" | "warning" | "error";
  message: string;
  actions: string[];
  modal?: boolean;
  detail?: string;
}

export interface RecordedProgress {
  title?: string;
  location: number;
  reports: { message?: string; increment?: number }[];
}

interface QuickPickCall {
  items: unknown[];
  placeHolder?: string;
}

export const fake = {
  terminals: [] as RecordedTerminal[],
  messages: [] as RecordedMessage[],
  progress: [] as RecordedProgress[],
  quickPicks: [] as QuickPickCall[],
  executedCommands: [] as { command: string; args: unknown[] }[],
  registeredCommands: new Map<string, (...args: unknown[]) => unknown>(),
  /** Chooses the quick pick answer; default: the first item. */
  pickAnswer: (items: unknown[]): unknown => items[0],
  /** Chooses the button clicked on a message; default: none (dismissed). */
  messageAnswer: (_message: RecordedMessage): string | undefined => undefined,
  workspaceFiles: [] as Uri[],
  activeEditorUri: undefined as Uri | undefined,
  shownDocuments: [] as string[],
  documentText: "",
  revealed: [] as unknown[],
  statusBarItems: [] as { id: string; text: string; tooltip?: string; command?: string; visible: boolean }[],
  configuration: new Map<string, unknown>(),
  reset(): void {
    fake.terminals = [];
    fake.messages = [];
    fake.progress = [];
    fake.quickPicks = [];
    fake.executedCommands = [];
    fake.registeredCommands = new Map();
    fake.pickAnswer = (items) => items[0];
    fake.messageAnswer = () => undefined;
    fake.workspaceFiles = [];
    fake.activeEditorUri = undefined;
    fake.shownDocuments = [];
    fake.documentText = "";
    fake.revealed = [];
    fake.statusBarItems = [];
    fake.configuration = new Map();
  },
};

export class Disposable {
  constructor(private readonly callOnDispose: () => void) {}
  static from(...disposables: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => disposables.forEach((disposable) => disposable.dispose()));
  }
  dispose(): void {
    this.callOnDispose();
  }
}

export class EventEmitter<T> {
  private listeners: ((value: T) => void)[] = [];
  readonly event = (listener: (value: T) => void): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((candidate) => candidate !== listener);
    });
  };
  fire(value: T): void {
    for (const listener of [...this.listeners]) listener(value);
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
  ) {}
  static file(fsPath: string): Uri {
    return new Uri("file", fsPath);
  }
  static parse(value: string): Uri {
    const match = /^([a-z]+):\/\/(.*)$/.exec(value);
    return match === null ? new Uri("file", value) : new Uri(match[1], decodeURIComponent(match[2]));
  }
  get path(): string {
    return this.fsPath;
  }
  toString(): string {
    return `${this.scheme}://${this.fsPath}`;
  }
}

export enum TreeItemCollapsibleState {
  None = 0,
  Collapsed = 1,
  Expanded = 2,
}

export class TreeItem {
  id?: string;
  description?: string;
  tooltip?: string;
  contextValue?: string;
  iconPath?: unknown;
  constructor(
    readonly label: string,
    readonly collapsibleState: TreeItemCollapsibleState = TreeItemCollapsibleState.None,
  ) {}
}

export class ThemeIcon {
  constructor(readonly id: string) {}
}

export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}

function recordMessage(level: RecordedMessage["level"]) {
  return async (message: string, ...actions: unknown[]): Promise<string | undefined> => {
    const options = actions.find((a): a is { modal?: boolean; detail?: string } => typeof a === "object" && a !== null);
    const recorded: RecordedMessage = { level, message, actions: actions.filter((a): a is string => typeof a === "string") };
    if (options?.modal) recorded.modal = true;
    if (options?.detail !== undefined) recorded.detail = options.detail;
    fake.messages.push(recorded);
    return fake.messageAnswer(recorded);
  };
}

export const window = {
  get activeTextEditor() {
    return fake.activeEditorUri === undefined ? undefined : { document: { uri: fake.activeEditorUri } };
  },
  showInformationMessage: recordMessage("info"),
  showWarningMessage: recordMessage("warning"),
  showErrorMessage: recordMessage("error"),
  async showQuickPick(items: unknown[] | Promise<unknown[]>, options?: { placeHolder?: string }) {
    const resolved = await items;
    fake.quickPicks.push({ items: resolved, placeHolder: options?.placeHolder });
    return fake.pickAnswer(resolved);
  },
  createTerminal(options: { name?: string; shellPath?: string; shellArgs?: string[] | string; cwd?: string }) {
    const terminal: RecordedTerminal = { ...options, shown: false, sentText: [] };
    fake.terminals.push(terminal);
    return {
      name: options.name,
      show: () => {
        terminal.shown = true;
      },
      sendText: (text: string) => {
        terminal.sentText.push(text);
      },
      dispose: () => undefined,
    };
  },
  async withProgress<R>(
    options: { location: number; title?: string },
    task: (progress: { report(step: { message?: string; increment?: number }) : void }) => Promise<R>,
  ): Promise<R> {
    const recorded: RecordedProgress = { title: options.title, location: options.location, reports: [] };
    fake.progress.push(recorded);
    return task({ report: (step) => recorded.reports.push(step) });
  },
  createTreeView(_id: string, _options: unknown) {
    const visibility = new EventEmitter<unknown>();
    return {
      visible: false,
      message: undefined as string | undefined,
      onDidChangeVisibility: visibility.event,
      dispose: () => undefined,
    };
  },
  async showTextDocument(document: { uri: Uri }) {
    fake.shownDocuments.push(document.uri.toString());
    return { document, selection: undefined as unknown, revealRange: (range: unknown) => fake.revealed.push(range) };
  },
  createStatusBarItem(id: string, _alignment?: number, _priority?: number) {
    const item = { id, text: "", tooltip: undefined as string | undefined, command: undefined as string | undefined, name: "", visible: false };
    fake.statusBarItems.push(item);
    return Object.assign(item, { show: () => (item.visible = true), hide: () => (item.visible = false), dispose: () => undefined });
  },
  createOutputChannel(_name: string) {
    return { appendLine: () => undefined, dispose: () => undefined };
  },
};

export class Range {
  constructor(
    readonly start: unknown,
    readonly end: unknown,
  ) {}
}

export class Selection extends Range {}

export enum TextEditorRevealType {
  InCenterIfOutsideViewport = 2,
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export const workspace = {
  async openTextDocument(uri: Uri) {
    return { uri, getText: () => fake.documentText, positionAt: (offset: number) => ({ offset }) };
  },
  async findFiles(_include: string, _exclude?: string, _max?: number): Promise<Uri[]> {
    return fake.workspaceFiles;
  },
  asRelativePath(uri: Uri): string {
    return uri.fsPath.replace(/^\/workspace\//, "");
  },
  getConfiguration(section?: string) {
    return {
      get<T>(key: string, defaultValue?: T): T | undefined {
        const fullKey = section === undefined ? key : `${section}.${key}`;
        return fake.configuration.has(fullKey) ? (fake.configuration.get(fullKey) as T) : defaultValue;
      },
    };
  },
  onDidChangeConfiguration(_listener: unknown): Disposable {
    return new Disposable(() => undefined);
  },
};

export const commands = {
  registerCommand(command: string, callback: (...args: unknown[]) => unknown): Disposable {
    if (fake.registeredCommands.has(command)) throw new Error(`command '${command}' already exists`);
    fake.registeredCommands.set(command, callback);
    return new Disposable(() => fake.registeredCommands.delete(command));
  },
  async executeCommand(command: string, ...args: unknown[]): Promise<unknown> {
    fake.executedCommands.push({ command, args });
    return fake.registeredCommands.get(command)?.(...args);
  },
};

export const env = {
  clipboard: {
    text: "",
    async writeText(text: string): Promise<void> {
      env.clipboard.text = text;
    },
  },
};

export const extensions = {
  getExtension(_id: string): undefined {
    return undefined;
  },
};
