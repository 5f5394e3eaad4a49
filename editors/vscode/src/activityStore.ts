/**
 * The latest `bottle/activity` from the server, for the Egress view, the Bottles view and the
 * status bar. The server pushes it whenever it changes; nothing here polls.
 */
import * as vscode from "vscode";
import type { BottleServerPort } from "./common";
import { ServerCommand, parseActivity, type BottleActivity } from "./contract";

export class ActivityStore implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private bottles: BottleActivity[] = [];
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly server: BottleServerPort) {
    this.subscriptions = [
      server.onActivity((value) => this.update(value)),
      // A (re)started server: ask once for the picture it already has.
      server.onStateChanged((state) => {
        if (state === "running") void this.fetch();
      }),
    ];
  }

  get all(): readonly BottleActivity[] {
    return this.bottles;
  }

  get(slug: string): BottleActivity | undefined {
    return this.bottles.find((bottle) => bottle.slug === slug);
  }

  update(value: unknown): void {
    try {
      this.bottles = parseActivity(value);
    } catch {
      return; // a malformed push is dropped; the next one replaces it
    }
    this.changed.fire();
  }

  async fetch(): Promise<void> {
    if (!this.server.isRunning) return;
    try {
      this.update(await this.server.execute(ServerCommand.activity, []));
    } catch {
      // an older server without bottle.activity: the views stay empty
    }
  }

  dispose(): void {
    for (const subscription of this.subscriptions) subscription.dispose();
    this.changed.dispose();
  }
}
