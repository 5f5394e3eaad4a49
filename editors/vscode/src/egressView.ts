/**
 * The "Egress" view: per running bottle, the hosts it reached or tried, grouped by decision,
 * live from `bottle/activity`. A refused host offers Allow (the server edits bottle.toml); an
 * ask still waiting offers Approve / Deny in place.
 */
import * as vscode from "vscode";
import type { ActivityStore } from "./activityStore";
import { bottleDescription } from "./bottles";
import { ExtensionCommand, errorText, type BottleServerPort } from "./common";
import { ServerCommand, ServerReportedError, parseAllowResult, throwIfServerError, type BottleActivity, type HostActivity } from "./contract";
import { displayText } from "./display";
import { decisionGroups, hostContextValue, hostDescription, hostLabel, hostTooltip, type DecisionGroup } from "./egress";

const APPROVE = "Approve";

export const EGRESS_VIEW_ID = "botBottle.egress";

export type EgressNode =
  | { kind: "bottle"; bottle: BottleActivity }
  | { kind: "group"; slug: string; group: DecisionGroup }
  /** `repeat`: how many rows before this one in its group read the same (see `getChildren`). */
  | { kind: "host"; slug: string; host: HostActivity; repeat?: number };

export class EgressTreeProvider implements vscode.TreeDataProvider<EgressNode> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(
    private readonly store: ActivityStore,
    private readonly now: () => Date = () => new Date(),
  ) {}

  refresh(): void {
    this.changed.fire();
  }

  getTreeItem(node: EgressNode): vscode.TreeItem {
    const expanded = vscode.TreeItemCollapsibleState.Expanded;
    if (node.kind === "bottle") {
      const item = new vscode.TreeItem(displayText(node.bottle.slug), expanded);
      item.id = `bottle:${node.bottle.slug}`;
      item.description = bottleDescription({ ...node.bottle, runtime: node.bottle.runtime }, this.now(), node.bottle);
      item.iconPath = new vscode.ThemeIcon(node.bottle.state === "running" ? "vm-running" : "warning");
      item.contextValue = `egressBottle.${node.bottle.state}`;
      if (node.bottle.hidden > 0) item.tooltip = `${node.bottle.hidden} more requests to hosts not listed here (too many distinct hosts)`;
      return item;
    }
    if (node.kind === "group") {
      const item = new vscode.TreeItem(node.group.label, expanded);
      item.id = `group:${node.slug}:${node.group.decision}`;
      item.iconPath = new vscode.ThemeIcon({ deny: "circle-slash", ask: "question", allow: "pass" }[node.group.decision]);
      return item;
    }
    const item = new vscode.TreeItem(hostLabel(node.host), vscode.TreeItemCollapsibleState.None);
    const id = `host:${node.slug}:${node.host.decision}:${node.host.host}:${node.host.port}`;
    item.id = node.repeat ? `${id}#${node.repeat}` : id;
    item.description = hostDescription(node.host);
    item.tooltip = hostTooltip(node.host);
    item.contextValue = hostContextValue(node.host);
    return item;
  }

  getChildren(node?: EgressNode): EgressNode[] {
    if (node === undefined) return this.store.all.map((bottle) => ({ kind: "bottle", bottle }));
    if (node.kind === "bottle") {
      return decisionGroups(node.bottle).map((group) => ({ kind: "group", slug: node.bottle.slug, group }));
    }
    if (node.kind === "group") {
      // Two hosts the server cut to the same text (names longer than any real one, which the
      // agent chose) would share an id, and VS Code shows none of a group with a repeated id.
      const seen = new Map<string, number>();
      return node.group.hosts.map((host) => {
        const key = `${host.host}:${host.port}`;
        const repeat = seen.get(key) ?? 0;
        seen.set(key, repeat + 1);
        return { kind: "host", slug: node.slug, host, repeat };
      });
    }
    return [];
  }

  dispose(): void {
    this.changed.dispose();
  }
}

function hostNode(argument: unknown): { slug: string; host: HostActivity } | undefined {
  const node = argument as EgressNode | undefined;
  return node?.kind === "host" ? { slug: node.slug, host: node.host } : undefined;
}

/** Allow: the server adds the host to its bottle's `allow` and the edited bottle.toml opens. */
export async function allowHost(server: BottleServerPort, argument: unknown): Promise<void> {
  const target = hostNode(argument);
  if (target === undefined || target.host.allow === null) return;
  try {
    const result = parseAllowResult(
      await server.execute(ServerCommand.allowHost, [{ slug: target.slug, host: target.host.host, port: target.host.port }]),
    );
    const document = await vscode.workspace.openTextDocument(vscode.Uri.parse(result.uri));
    const shown = await vscode.window.showTextDocument(document);
    // Put the person on the line that changed: a manifest is often longer than one screen.
    const at = document.getText().indexOf(JSON.stringify(result.entry));
    if (at >= 0) {
      const range = new vscode.Range(document.positionAt(at), document.positionAt(at + JSON.stringify(result.entry).length));
      shown.selection = new vscode.Selection(range.start, range.end);
      shown.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    }
    const entry = displayText(result.entry);
    void vscode.window.showInformationMessage(
      result.already
        ? `${entry} is already in this bottle's allow; launch the bottle again to use it.`
        : `Added ${entry} to the bottle's allow. Save bottle.toml and launch again (you will be asked to trust the wider allowlist); the running bottle keeps its rules.`,
    );
  } catch (error) {
    if (!(error instanceof ServerReportedError)) {
      void vscode.window.showErrorMessage(`Bot Bottle: Allow failed: ${displayText(errorText(error))}`);
    }
  }
}

/** Approve / Deny a pending ask from its row. The row's host and port go with each answer: the
 * ids come from the bundle's audit log, and the server refuses an id whose request asks about
 * another destination than the row shows. */
export async function answerAsk(server: BottleServerPort, argument: unknown, approved: boolean): Promise<void> {
  const target = hostNode(argument);
  if (target === undefined) return;
  const { host, port } = target.host;
  if (approved && !(await confirmApproval(target.slug, host, port))) return;
  try {
    for (const requestId of target.host.pending) {
      throwIfServerError(await server.execute(ServerCommand.answer, [{ slug: target.slug, request_id: requestId, approved, host, port }]));
    }
  } catch (error) {
    if (!(error instanceof ServerReportedError)) {
      void vscode.window.showErrorMessage(`Bot Bottle: answering failed: ${displayText(errorText(error))}`);
    }
  }
}

/** Approving from a row is one click on an icon beside a label that shows only part of a name
 * the agent chose: the person confirms with the whole name in front of them (denying narrows,
 * and needs no confirmation). */
async function confirmApproval(slug: string, host: string, port: number): Promise<boolean> {
  const where = displayText(`${host}:${port}`);
  const choice = await vscode.window.showWarningMessage(
    `Let bottle ${displayText(slug)} reach ${where} until it stops?`,
    {
      modal: true,
      detail: `The agent asked to reach ${where}. Approving lets every request to it through until the bottle stops; the requests it holds now go at once.`,
    },
    APPROVE,
  );
  return choice === APPROVE;
}

export function registerEgressView(server: BottleServerPort, store: ActivityStore): vscode.Disposable {
  const provider = new EgressTreeProvider(store);
  const view = vscode.window.createTreeView(EGRESS_VIEW_ID, { treeDataProvider: provider });
  return vscode.Disposable.from(
    view,
    provider,
    store.onDidChange(() => provider.refresh()),
    vscode.commands.registerCommand(ExtensionCommand.allowHost, (node?: unknown) => allowHost(server, node)),
    vscode.commands.registerCommand(ExtensionCommand.approveAsk, (node?: unknown) => answerAsk(server, node, true)),
    vscode.commands.registerCommand(ExtensionCommand.denyAsk, (node?: unknown) => answerAsk(server, node, false)),
  );
}

/** Running bottles and pending approvals at a glance; a click opens the Bot Bottle views. */
export function registerStatusBar(store: ActivityStore, text: (bottles: readonly BottleActivity[]) => { text: string; tooltip: string }): vscode.Disposable {
  const item = vscode.window.createStatusBarItem("botBottle.status", vscode.StatusBarAlignment.Left, 50);
  item.name = "Bot Bottle";
  item.command = ExtensionCommand.showViews;
  const update = (): void => {
    const shown = text(store.all);
    item.text = shown.text;
    item.tooltip = shown.tooltip;
    item.show();
  };
  update();
  return vscode.Disposable.from(item, store.onDidChange(update));
}
