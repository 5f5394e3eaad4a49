/**
 * Entry point: start `bottle-lsp`, register the palette commands, show the Bottles view.
 * Kept short on purpose: the server owns everything about bottle.toml.
 */
import * as vscode from "vscode";
import { BottleActions } from "./actions";
import { ActivityStore } from "./activityStore";
import { statusBarText } from "./egress";
import { registerEgressView, registerStatusBar } from "./egressView";
import { registerBottlesView } from "./bottlesView";
import { CONFIG_SECTION, ExtensionCommand } from "./common";
import { BottleServer } from "./server";

/** Returned from `activate` for tests and other extensions. */
export interface BotBottleApi {
  server: BottleServer;
  actions: BottleActions;
}

let server: BottleServer | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<BotBottleApi> {
  const output = vscode.window.createOutputChannel("Bot Bottle");
  // The server's middleware calls back into the actions, which need the server: late binding.
  // eslint-disable-next-line prefer-const -- the callback below reads it; assigned after the server
  let actions: BottleActions | undefined;
  server = new BottleServer(output, (command, args, next) => actions!.handleServerCommand(command, args, next));
  actions = new BottleActions(server);
  const bottleServer = server;
  const boundActions = actions;
  const activity = new ActivityStore(bottleServer);
  const view = registerBottlesView(bottleServer, activity);

  context.subscriptions.push(
    output,
    bottleServer,
    activity,
    view.disposable,
    registerEgressView(bottleServer, activity),
    registerStatusBar(activity, statusBarText),
    vscode.commands.registerCommand(ExtensionCommand.showViews, () =>
      vscode.commands.executeCommand("workbench.view.extension.botBottle"),
    ),
    vscode.commands.registerCommand(ExtensionCommand.launch, (argument?: unknown) => boundActions.launch(argument)),
    vscode.commands.registerCommand(ExtensionCommand.attach, (argument?: unknown) => boundActions.attach(argument)),
    vscode.commands.registerCommand(ExtensionCommand.stop, (argument?: unknown) => boundActions.stop(argument)),
    vscode.commands.registerCommand(ExtensionCommand.showEgressLog, (argument?: unknown) =>
      boundActions.showLogs(argument),
    ),
    vscode.commands.registerCommand(ExtensionCommand.reviewTrust, (argument?: unknown) =>
      boundActions.reviewTrust(argument),
    ),
    vscode.commands.registerCommand(ExtensionCommand.restartServer, () => bottleServer.restart()),
    vscode.commands.registerCommand(ExtensionCommand.refreshBottles, () => view.provider.refresh()),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(`${CONFIG_SECTION}.server`)) void bottleServer.restart();
    }),
  );
  await bottleServer.start();
  return { server: bottleServer, actions: boundActions };
}

export async function deactivate(): Promise<void> {
  await server?.stop();
  server = undefined;
}
