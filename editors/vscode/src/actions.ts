/**
 * What Launch / Attach / Stop / Show Egress Log do, whether they come from the palette, the
 * Bottles view, or a code lens the server put into bottle.toml. Each action reports its own
 * errors to the user and never throws, so a failing lens never shows a bare stack trace.
 */
import * as vscode from "vscode";
import { bottlePickItems, bottleState, isRunning } from "./bottles";
import {
  ServerCommand,
  launchArgsFromArgument,
  parseAgents,
  parseBottleList,
  parseLaunchResult,
  parseTerminalCommand,
  parseTrustReview,
  ServerReportedError,
  slugFromArgument,
  throwIfServerError,
  type LaunchArgs,
} from "./contract";
import { MANIFEST_GLOB, chooseManifest } from "./manifests";
import { ProgressTranslator } from "./progress";
import { errorText, type BottleServerPort } from "./common";
import { displayText } from "./display";
import { SERVER_WORKING_DIRECTORY } from "./serverCommand";

const TRUST = "Trust";

export class BottleActions {
  private launchCount = 0;

  constructor(private readonly server: BottleServerPort) {}

  /**
   * The code-lens path: the language client calls this for the server's command ids, so a
   * lens gets the same progress, terminal and errors as the palette command.
   */
  async handleServerCommand(
    command: string,
    args: unknown[],
    next: ((command: string, args: unknown[]) => Promise<unknown>) | undefined,
  ): Promise<unknown> {
    switch (command) {
      case ServerCommand.launch:
        return this.launch(args[0]);
      case ServerCommand.attach:
        return this.attach(args[0]);
      case ServerCommand.stop:
        return this.stop(args[0]);
      case ServerCommand.logs:
        return this.showLogs(args[0]);
      case ServerCommand.trust:
        return this.reviewTrust(args[0]);
      default:
        return next !== undefined ? next(command, args) : this.server.execute(command, args);
    }
  }

  /** Launch: `{uri, agent}` from a lens; otherwise asks for the manifest and the agent. */
  async launch(argument?: unknown): Promise<string | undefined> {
    return reportingFailure("launch failed", undefined, async () => {
      const target = await this.manifestFor(argument);
      if (target === undefined) return undefined;
      const agent = target.agent ?? (await this.pickAgent(target.uri));
      if (agent === undefined) return undefined;
      const slug = await this.runLaunch({ uri: target.uri, agent });
      this.server.notifyBottlesChanged();
      void vscode.window
        .showInformationMessage(`Bottle ${displayText(slug)} is running (agent ${displayText(agent)}).`, "Attach", "Show Egress Log")
        .then((choice) => {
          if (choice === "Attach") void this.attach(slug);
          else if (choice === "Show Egress Log") void this.showLogs({ slug, egress: true });
        });
      return slug;
    });
  }

  /**
   * Review changes (the lens shown instead of Launch while the saved bottle.toml widens what
   * was last trusted): the difference in a modal with Trust. What is recorded is the content
   * that was shown (its fingerprint); then the lens's agent can be launched. True when trusted.
   */
  async reviewTrust(argument?: unknown): Promise<boolean> {
    return reportingFailure("review of the manifest's changes failed", false, async () => {
      const target = await this.manifestFor(argument);
      if (target === undefined) return false;
      const { uri, agent } = target;
      const review = parseTrustReview(
        ServerCommand.trustReview,
        await this.server.execute(ServerCommand.trustReview, [{ uri }]),
      );
      // The path and the changes quote the manifest (a directory or a secret path the agent
      // named): no link or icon may be made of them, even by a server that did not escape them.
      const manifest = displayText(review.manifest);
      if (review.trusted) {
        void vscode.window.showInformationMessage(`${manifest} has no changes that need your trust.`);
        return true;
      }
      const detail = review.changes.map((change) => `${change.widening ? "+" : "-"} ${displayText(change.text)}`).join("\n");
      const choice = await vscode.window.showWarningMessage(
        `${manifest} changed since it was last trusted. Its bottles may now do more (+). ` +
          "Launching stays blocked until you trust it.",
        { modal: true, detail },
        TRUST,
      );
      if (choice !== TRUST) return false;
      parseTrustReview(
        ServerCommand.trust,
        await this.server.execute(ServerCommand.trust, [{ uri, fingerprint: review.fingerprint }]),
      );
      const launch = agent === undefined ? [] : [`Launch ${agent}`];
      void vscode.window.showInformationMessage(`Trusted ${manifest}.`, ...launch).then((picked) => {
        if (agent !== undefined && picked === `Launch ${agent}`) void this.launch({ uri, agent });
      });
      return true;
    });
  }

  async attach(argument?: unknown): Promise<void> {
    return reportingFailure("attach failed", undefined, async () => {
      const slug = slugFromArgument(argument) ?? (await this.pickBottle("Attach to which bottle?", { confirm: false, runningOnly: true }));
      if (slug === undefined) return;
      const result = await this.server.execute(ServerCommand.attach, [{ slug }]);
      openTerminal(`Bottle ${displayText(slug)}`, parseTerminalCommand(ServerCommand.attach, result).command);
    });
  }

  async stop(argument?: unknown): Promise<void> {
    return reportingFailure("stop failed", undefined, async () => {
      try {
        const slug = slugFromArgument(argument) ?? (await this.pickBottle("Stop which bottle?", { confirm: true, runningOnly: true, degradedToo: true }));
        if (slug === undefined) return;
        const result = await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: `Stopping bottle ${displayText(slug)}` },
          () => this.server.execute(ServerCommand.stop, [{ slug }]),
        );
        throwIfServerError(result);
        this.server.notifyBottlesChanged();
        void vscode.window.showInformationMessage(`Bottle ${displayText(slug)} stopped.`);
      } catch (error) {
        // A stop that failed half way may have stopped part of the bottle: the view shows it.
        this.server.notifyBottlesChanged();
        throw error;
      }
    });
  }

  /** The egress audit log unless the argument says `egress: false` (the agent's output). */
  async showLogs(argument?: unknown): Promise<void> {
    return reportingFailure("showing the log failed", undefined, async () => {
      const slug = slugFromArgument(argument) ?? (await this.pickBottle("Show the egress log of which bottle?", { confirm: false, runningOnly: false }));
      if (slug === undefined) return;
      const egress = !(typeof argument === "object" && argument !== null && (argument as { egress?: unknown }).egress === false);
      const result = await this.server.execute(ServerCommand.logs, [{ slug, egress }]);
      const title = egress ? `Egress log ${displayText(slug)}` : `Log ${displayText(slug)}`;
      openTerminal(title, parseTerminalCommand(ServerCommand.logs, result).command);
    });
  }

  private async runLaunch(args: LaunchArgs): Promise<string> {
    const workDoneToken = `bot-bottle-launch-${process.pid}-${++this.launchCount}`;
    const result = await vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: `Launching bottle for agent ${displayText(args.agent)}`,
        cancellable: false,
      },
      async (progress) => {
        const translator = new ProgressTranslator();
        return this.server.withProgressSink(
          workDoneToken,
          (value) => {
            const step = translator.next(value);
            if (step !== undefined) progress.report(step);
          },
          () => this.server.execute(ServerCommand.launch, [args], workDoneToken),
        );
      },
    );
    return parseLaunchResult(result).slug;
  }

  /**
   * The manifest an action is for, and the agent when one was given: `{uri, agent}` from a lens,
   * a Uri from the explorer; otherwise the person picks the manifest (undefined: cancelled).
   */
  private async manifestFor(argument: unknown): Promise<{ uri: string; agent?: string } | undefined> {
    const partial = argument instanceof vscode.Uri ? { uri: argument.toString() } : launchArgsFromArgument(argument);
    const uri = partial.uri ?? (await this.pickManifest());
    return uri === undefined ? undefined : { uri, agent: partial.agent };
  }

  private async pickManifest(): Promise<string | undefined> {
    const active = vscode.window.activeTextEditor?.document.uri;
    const found = await vscode.workspace.findFiles(MANIFEST_GLOB, "**/node_modules/**", 200);
    const choice = chooseManifest(active?.scheme === "file" ? active : undefined, found, (uri) => uri.fsPath);
    if (choice.kind === "none") {
      throw new Error("no bottle.toml is open or in this workspace. Create one, then launch again");
    }
    if (choice.kind === "one") return choice.manifest.toString();
    const picked = await vscode.window.showQuickPick(
      // The agent may have named the directories: no icon or bidi override in the label.
      choice.manifests.map((uri) => ({ label: displayText(vscode.workspace.asRelativePath(uri)), uri })),
      { placeHolder: "Launch from which bottle.toml?" },
    );
    return picked?.uri.toString();
  }

  private async pickAgent(uri: string): Promise<string | undefined> {
    const agents = parseAgents(await this.server.execute(ServerCommand.agents, [{ uri }]));
    if (agents.length === 0) {
      throw new Error(`${vscode.Uri.parse(uri).fsPath} declares no agents. Add an [agents.<name>] table`);
    }
    const picked = await vscode.window.showQuickPick(
      agents.map((agent) => ({
        label: displayText(agent.name),
        description: agent.bottle === "" ? "" : `bottle ${displayText(agent.bottle)}`,
        name: agent.name,
      })),
      { placeHolder: "Launch which agent?" },
    );
    return picked?.name;
  }

  /**
   * `confirm`: always ask, even for a single bottle (used before stopping one).
   * `runningOnly`: leave out stopped bottles (a stopped bottle still has its logs);
   * `degradedToo`: keep degraded ones as well (Stop repairs nothing, but removes them).
   */
  private async pickBottle(
    placeHolder: string,
    { confirm, runningOnly, degradedToo = false }: { confirm: boolean; runningOnly: boolean; degradedToo?: boolean },
  ): Promise<string | undefined> {
    const listed = parseBottleList(await this.server.execute(ServerCommand.list, []));
    const shown = (bottle: (typeof listed)[number]): boolean =>
      isRunning(bottle) || (degradedToo && bottleState(bottle) === "degraded");
    const bottles = runningOnly ? listed.filter(shown) : listed;
    if (bottles.length === 0) {
      void vscode.window.showInformationMessage("No bottles are running.");
      return undefined;
    }
    if (bottles.length === 1 && !confirm) return bottles[0].slug;
    const picked = await vscode.window.showQuickPick(bottlePickItems(bottles, new Date()), { placeHolder });
    return picked?.slug;
  }
}

/**
 * Runs an action: if it fails, shows why (unless the server has already shown it) and returns
 * `fallback`, so an action never throws at whoever invoked it (palette, view or lens).
 */
async function reportingFailure<T>(what: string, fallback: T, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (!(error instanceof ServerReportedError)) {
      void vscode.window.showErrorMessage(`Bot Bottle: ${what}: ${displayText(errorText(error))}`);
    }
    return fallback;
  }
}

/**
 * Runs the server-provided argv directly (no shell), so nothing in it is reinterpreted, and not
 * in the workspace folder (a terminal's default): see `SERVER_WORKING_DIRECTORY`.
 */
export function openTerminal(name: string, argv: string[]): vscode.Terminal {
  const [shellPath, ...shellArgs] = argv;
  const terminal = vscode.window.createTerminal({ name, shellPath, shellArgs, cwd: SERVER_WORKING_DIRECTORY });
  terminal.show();
  return terminal;
}
