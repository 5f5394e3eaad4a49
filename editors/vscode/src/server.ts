/**
 * Owns the `bottle-lsp` language client: how it starts, restarts, and how commands reach it.
 * Everything language-specific happens in the server; this module only wires it to VS Code.
 */
import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  State,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
  type LanguageClientOptions,
  type ServerOptions,
} from "vscode-languageclient/node";
import { BOTTLE_ACTIVITY_NOTIFICATION, BOTTLE_CHANGED_NOTIFICATION, SERVER_COMMAND_IDS } from "./contract";
import { CONFIG_SECTION, errorText, type BottleServerPort } from "./common";
import { MANIFEST_GLOB, MANIFEST_GLOBS } from "./manifests";
import type { WorkDoneValue } from "./progress";
import { selectedPythonInterpreter } from "./pythonInterpreter";
import { displayText } from "./display";
import { probeServerLaunch } from "./serverProbe";
import {
  SERVER_EXECUTABLE,
  SERVER_WORKING_DIRECTORY,
  findOnPath,
  missingServerAdvice,
  resolveServerLaunch,
  serverExecutable,
  type ServerLaunch,
  withAbsoluteCommand,
} from "./serverCommand";

export type ServerState = "starting" | "running" | "stopped" | "missing";


/** Handles a server command id invoked from a code lens (or any `executeCommand` caller). */
export type ServerCommandHandler = (
  command: string,
  args: unknown[],
  next: ((command: string, args: unknown[]) => Promise<unknown>) | undefined,
) => Promise<unknown>;


export class BottleServer implements BottleServerPort, vscode.Disposable {
  private client: LanguageClient | undefined;
  private state: ServerState = "stopped";
  /** Commands registered here because the server did not advertise them (see README). */
  private fallbackCommands: vscode.Disposable[] = [];
  private clientDisposables: vscode.Disposable[] = [];
  private progressSink: ((value: WorkDoneValue) => void) | undefined;
  private readonly bottlesChanged = new vscode.EventEmitter<void>();
  private readonly stateChanged = new vscode.EventEmitter<ServerState>();
  private readonly activity = new vscode.EventEmitter<unknown>();
  readonly onActivity = this.activity.event;
  /** Fires on `bottle/changed` from the server and after this client changed a bottle. */
  readonly onBottlesChanged = this.bottlesChanged.event;
  readonly onStateChanged = this.stateChanged.event;

  constructor(
    private readonly output: vscode.OutputChannel,
    private readonly handleServerCommand: ServerCommandHandler,
  ) {}

  get currentState(): ServerState {
    return this.state;
  }

  get isRunning(): boolean {
    return this.client !== undefined && this.client.isRunning();
  }

  /** Starts the server; on a missing server shows the install advice and resolves false. */
  async start(): Promise<boolean> {
    if (this.client !== undefined) return true;
    this.setState("starting");
    let launch: ServerLaunch;
    try {
      launch = await this.resolveLaunch();
    } catch (error) {
      this.setState("missing");
      void vscode.window.showErrorMessage(errorText(error), "Open Settings").then((choice) => {
        if (choice === "Open Settings") openServerSettings();
      });
      return false;
    }
    if (launch.passedOver !== undefined) {
      this.output.appendLine(
        `Not starting the server with the Python extension's interpreter ${displayText(launch.passedOver)}: ` +
          "it is in the workspace, which a pulled branch may have written. " +
          "To use it all the same, set botBottle.server.python in your user settings.",
      );
    }
    this.output.appendLine(`Starting language server: ${[launch.command, ...launch.args].join(" ")}`);
    const problem = await probeServerLaunch(launch);
    if (problem !== undefined) {
      this.reportMissing(launch, problem);
      return false;
    }
    const client = this.createClient(launch);
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      this.client = undefined;
      this.disposeClientResources();
      await client.dispose().catch(() => undefined);
      this.reportMissing(launch, errorText(error));
      return false;
    }
    this.afterStart(client);
    this.setState("running");
    return true;
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.disposeClientResources();
    if (client !== undefined) {
      try {
        await client.stop(5000);
      } catch (error) {
        this.output.appendLine(`Stopping the language server failed: ${errorText(error)}`);
      }
      await client.dispose().catch(() => undefined);
    }
    this.setState("stopped");
  }

  /** Re-reads the settings, so a changed server command or interpreter takes effect. */
  async restart(): Promise<boolean> {
    await this.stop();
    return this.start();
  }

  /**
   * Sends `workspace/executeCommand`. With `workDoneToken`, the server may report `$/progress`
   * on it; `onProgress` delivers those reports.
   */
  async execute(command: string, args: unknown[], workDoneToken?: string): Promise<unknown> {
    const client = this.client;
    if (client === undefined || !client.isRunning()) {
      throw new Error(
        "The Bot Bottle language server is not running. Run 'Bot Bottle: Restart Language Server'.",
      );
    }
    return client.sendRequest(ExecuteCommandRequest.type, {
      command,
      arguments: args,
      ...(workDoneToken === undefined ? {} : { workDoneToken }),
    });
  }

  /**
   * Routes work-done progress to `sink` while `work` runs: both reports on `workDoneToken`
   * (client-created) and on tokens the server creates itself during that time.
   */
  async withProgressSink<T>(
    workDoneToken: string,
    sink: (value: WorkDoneValue) => void,
    work: () => Promise<T>,
  ): Promise<T> {
    const subscription = this.client?.onProgress(WorkDoneProgress.type, workDoneToken, sink);
    const previous = this.progressSink;
    this.progressSink = sink;
    try {
      return await work();
    } finally {
      this.progressSink = previous;
      subscription?.dispose();
    }
  }

  /** Tells the bottles view to refresh (the server also says so with `bottle/changed`). */
  notifyBottlesChanged(): void {
    this.bottlesChanged.fire();
  }

  dispose(): void {
    void this.stop();
    this.bottlesChanged.dispose();
    this.stateChanged.dispose();
    this.activity.dispose();
  }

  private async resolveLaunch(): Promise<ServerLaunch> {
    const config = vscode.workspace.getConfiguration(CONFIG_SECTION);
    const resource = vscode.window.activeTextEditor?.document.uri;
    return withAbsoluteCommand(
      resolveServerLaunch({
        configuredCommand: config.get<unknown>("server.command"),
        configuredPython: config.get<unknown>("server.python"),
        selectedInterpreter: await selectedPythonInterpreter(vscode.extensions, resource),
        workspaceFolders: (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath),
        executableOnPath: findOnPath(SERVER_EXECUTABLE),
      }),
    );
  }

  private createClient(launch: ServerLaunch): LanguageClient {
    const executable = serverExecutable(launch);
    const serverOptions: ServerOptions = { run: executable, debug: executable };
    const clientOptions: LanguageClientOptions = {
      // By file pattern, not language id: bottle.toml is "bottle-toml" (our grammar) unless the
      // person maps it to "toml" for another TOML extension; the server gets it either way.
      documentSelector: MANIFEST_GLOBS.map((pattern) => ({ scheme: "file", pattern })),
      initializationOptions: {
        pool: {
          keepWarm: vscode.workspace.getConfiguration(CONFIG_SECTION).get<boolean>("pool.keepWarm", false),
        },
      },
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher(MANIFEST_GLOB) },
      outputChannel: this.output,
      middleware: {
        executeCommand: (command, args, next) =>
          this.handleServerCommand(command, args, (c, a) => Promise.resolve<unknown>(next(c, a))),
      },
    };
    return new LanguageClient(CONFIG_SECTION, "Bot Bottle", serverOptions, clientOptions);
  }

  private afterStart(client: LanguageClient): void {
    this.clientDisposables.push(
      client.onNotification(BOTTLE_CHANGED_NOTIFICATION, () => this.bottlesChanged.fire()),
      client.onNotification(BOTTLE_ACTIVITY_NOTIFICATION, (params: unknown) => this.activity.fire(params)),
      // Replaces the client library's handler, which shows server-created progress only in
      // the status bar: during a launch it goes to the launch's notification instead.
      client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
        this.routeServerProgress(client, token);
      }),
      client.onDidChangeState(({ newState }) => {
        if (this.client !== client) return;
        this.setState(newState === State.Running ? "running" : newState === State.Starting ? "starting" : "stopped");
      }),
    );
    const advertised = new Set(client.initializeResult?.capabilities.executeCommandProvider?.commands ?? []);
    for (const command of SERVER_COMMAND_IDS) {
      if (advertised.has(command)) continue;
      this.output.appendLine(`The server does not advertise '${command}'; registering it client-side.`);
      this.fallbackCommands.push(
        vscode.commands.registerCommand(command, (...args: unknown[]) =>
          this.handleServerCommand(command, args, undefined),
        ),
      );
    }
    this.bottlesChanged.fire();
  }

  private routeServerProgress(client: LanguageClient, token: string | number): void {
    const sink = this.progressSink;
    if (sink !== undefined) {
      const subscription = client.onProgress(WorkDoneProgress.type, token, (value) => {
        sink(value);
        if (value.kind === "end") subscription.dispose();
      });
      return;
    }
    // Not during a launch: the same quiet status-bar progress the client library shows.
    let finish: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (finish = resolve));
    void vscode.window.withProgress({ location: vscode.ProgressLocation.Window }, async (progress) => {
      const subscription = client.onProgress(WorkDoneProgress.type, token, (value) => {
        if (value.kind === "end") {
          subscription.dispose();
          finish();
        } else {
          const message = value.kind === "begin" ? (value.message ?? value.title) : value.message;
          progress.report({ message });
        }
      });
      await done;
    });
  }

  private reportMissing(launch: ServerLaunch, reason: string): void {
    this.setState("missing");
    const advice = missingServerAdvice(launch, reason);
    this.output.appendLine(advice.message);
    const install = "Install in Terminal";
    const copy = "Copy Install Command";
    const settings = "Open Settings";
    void vscode.window.showErrorMessage(advice.message, install, copy, settings).then((choice) => {
      if (choice === install) {
        // Not in the workspace folder: `python3 -m pip` there imports a `pip/` the branch holds.
        const terminal = vscode.window.createTerminal({ name: "Install Bot Bottle", cwd: SERVER_WORKING_DIRECTORY });
        terminal.show();
        terminal.sendText(advice.installCommand);
      } else if (choice === copy) {
        void vscode.env.clipboard.writeText(advice.installCommand);
      } else if (choice === settings) {
        openServerSettings();
      }
    });
  }

  private disposeClientResources(): void {
    for (const disposable of [...this.clientDisposables, ...this.fallbackCommands]) disposable.dispose();
    this.clientDisposables = [];
    this.fallbackCommands = [];
  }

  private setState(state: ServerState): void {
    if (this.state === state) return;
    this.state = state;
    void vscode.commands.executeCommand("setContext", "botBottle.serverState", state);
    this.stateChanged.fire(state);
  }
}

function openServerSettings(): void {
  void vscode.commands.executeCommand("workbench.action.openSettings", "botBottle.server");
}

