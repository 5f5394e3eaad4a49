/**
 * The "Bottles" view in the explorer: running bottles from `bottle.list`, refreshed on
 * `bottle/changed` and on a timer while the view is visible (the age column moves).
 */
import * as vscode from "vscode";
import type { ActivityStore } from "./activityStore";
import { bottleContextValue, bottleDescription, bottleState, bottleTooltip, sortBottles } from "./bottles";
import { ServerCommand, parseBottleList, type BottleSummary } from "./contract";
import { CONFIG_SECTION, errorText, type BottleServerPort } from "./common";
import { displayText } from "./display";

export const BOTTLES_VIEW_ID = "botBottle.bottles";
const DEFAULT_REFRESH_SECONDS = 5;
/** The shortest refresh period: each refresh lists every bottle (the engine asks Docker, and
 * smolvm per bottle), and `botBottle.bottles.refreshInterval` may come from a workspace's own
 * `.vscode/settings.json`, where 0.001 asked for a thousand listings a second. */
export const MIN_REFRESH_SECONDS = 1;

/** Node runs a timer longer than this (or shorter than 1 ms) every millisecond. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The timer period in milliseconds for the setting's `value`; undefined: no timer (0, or not
 * a positive number), refreshes on change only. */
export function refreshPeriodMs(value: unknown): number | undefined {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) return undefined;
  return Math.min(Math.max(value, MIN_REFRESH_SECONDS) * 1000, MAX_TIMER_MS);
}

export class BottlesTreeProvider implements vscode.TreeDataProvider<BottleSummary> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  /** True after a failed listing: the timer then waits for a change or a manual refresh. */
  lastListingFailed = false;
  /** The view whose message shows a failed listing (set once the view exists). */
  view: vscode.TreeView<BottleSummary> | undefined;

  constructor(
    private readonly server: BottleServerPort,
    private readonly now: () => Date = () => new Date(),
    /** Pending approvals and refusals per bottle, pushed by the server. */
    private readonly activity?: Pick<ActivityStore, "get">,
  ) {}

  refresh(): void {
    this.changed.fire();
  }

  getTreeItem(bottle: BottleSummary): vscode.TreeItem {
    const item = new vscode.TreeItem(displayText(bottle.slug), vscode.TreeItemCollapsibleState.None);
    item.id = bottle.slug;
    const state = bottleState(bottle);
    item.description = bottleDescription(bottle, this.now(), this.activity?.get(bottle.slug));
    item.tooltip = bottleTooltip(bottle, this.now());
    item.contextValue = bottleContextValue(bottle);
    item.iconPath = new vscode.ThemeIcon(state === "running" ? "vm-running" : state === "degraded" ? "warning" : "vm-outline");
    return item;
  }

  async getChildren(element?: BottleSummary): Promise<BottleSummary[]> {
    if (element !== undefined || !this.server.isRunning) return [];
    try {
      const listed = parseBottleList(await this.server.execute(ServerCommand.list, []));
      // Stopped bottles keep their state for `resume`, but the view shows what is running, and
      // what is degraded (not running, and not stopped either: it needs a person).
      const bottles = sortBottles(listed.filter((bottle) => bottleState(bottle) !== "stopped"));
      this.lastListingFailed = false;
      this.showMessage(undefined);
      return bottles;
    } catch (error) {
      this.lastListingFailed = true;
      this.showMessage(`Could not list bottles: ${displayText(errorText(error))} (Refresh to retry.)`);
      return [];
    }
  }

  private showMessage(message: string | undefined): void {
    if (this.view !== undefined) this.view.message = message;
  }

  dispose(): void {
    this.changed.dispose();
  }
}

/** Creates the view and keeps it fresh; everything it starts is in the returned disposable. */
export function registerBottlesView(
  server: BottleServerPort,
  activity?: ActivityStore,
): { provider: BottlesTreeProvider; disposable: vscode.Disposable } {
  const provider = new BottlesTreeProvider(server, () => new Date(), activity);
  const view = vscode.window.createTreeView(BOTTLES_VIEW_ID, { treeDataProvider: provider, showCollapseAll: false });
  provider.view = view;
  let timer: ReturnType<typeof setInterval> | undefined;
  const refresh = (): void => provider.refresh();
  // A failing listing is not retried by the timer: the server reports each failure to the user.
  const refreshOnTimer = (): void => {
    if (!provider.lastListingFailed) refresh();
  };
  const updateTimer = (): void => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
    if (!view.visible) return;
    const seconds = vscode.workspace.getConfiguration(CONFIG_SECTION).get<unknown>("bottles.refreshInterval", DEFAULT_REFRESH_SECONDS);
    const period = refreshPeriodMs(seconds);
    if (period !== undefined) timer = setInterval(refreshOnTimer, period);
  };
  const disposables: vscode.Disposable[] = [
    view,
    provider,
    server.onBottlesChanged(refresh),
    server.onStateChanged(refresh),
    ...(activity === undefined ? [] : [activity.onDidChange(refresh)]),
    view.onDidChangeVisibility(() => {
      updateTimer();
      if (view.visible) refresh();
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(`${CONFIG_SECTION}.bottles.refreshInterval`)) updateTimer();
    }),
    { dispose: () => timer !== undefined && clearInterval(timer) },
  ];
  updateTimer();
  return { provider, disposable: vscode.Disposable.from(...disposables) };
}
