/** Small shared pieces of the extension that carry no dependency on the language client. */
import type * as vscode from "vscode";
import type { WorkDoneValue } from "./progress";

/** Settings section, language client id and `<id>.trace.server` prefix. */
export const CONFIG_SECTION = "botBottle";

/** Palette / view command ids; the server's own command ids are `bottle.*` (contract.ts). */
export const ExtensionCommand = {
  launch: "botBottle.launch",
  attach: "botBottle.attach",
  stop: "botBottle.stop",
  showEgressLog: "botBottle.showEgressLog",
  restartServer: "botBottle.restartServer",
  refreshBottles: "botBottle.refreshBottles",
  reviewTrust: "botBottle.reviewTrust",
  allowHost: "botBottle.allowHost",
  approveAsk: "botBottle.approveAsk",
  denyAsk: "botBottle.denyAsk",
  showViews: "botBottle.showViews",
} as const;

/** What the actions and the Bottles view need from the language server connection. */
export interface BottleServerPort {
  readonly isRunning: boolean;
  readonly onBottlesChanged: vscode.Event<void>;
  readonly onStateChanged: vscode.Event<unknown>;
  /** `bottle/activity` pushes (the raw params; `parseActivity` reads them). */
  readonly onActivity: vscode.Event<unknown>;
  execute(command: string, args: unknown[], workDoneToken?: string): Promise<unknown>;
  withProgressSink<T>(
    workDoneToken: string,
    sink: (value: WorkDoneValue) => void,
    work: () => Promise<T>,
  ): Promise<T>;
  notifyBottlesChanged(): void;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
