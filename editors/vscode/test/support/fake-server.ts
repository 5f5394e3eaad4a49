/** A scripted stand-in for the language server connection (BottleServerPort). */
import type { BottleServerPort } from "../../src/common";
import type { WorkDoneValue } from "../../src/progress";
import { EventEmitter } from "./fake-vscode";

/** A value to answer with, or a function `(args, server, token) => value` that makes it. */
export type Answer = unknown;

/**
 * A `bottle.trustReview` answer for a manifest whose change widens (+) and narrows (-) what
 * its bottles may do: the contract tests read it, the action tests show it.
 */
export const TRUST_REVIEW = {
  manifest: "/workspace/bottle.toml",
  first_use: false,
  trusted: false,
  fingerprint: "f1ngerprint",
  changes: [
    { text: "bottle web: allow + collector.example", widening: true },
    { text: "bottle web: allow - old.example", widening: false },
  ],
};

export class FakeServer implements BottleServerPort {
  isRunning = true;
  readonly requests: { command: string; args: unknown[]; workDoneToken?: string }[] = [];
  readonly answers = new Map<string, Answer>();
  bottlesChangedCount = 0;
  private readonly bottlesEmitter = new EventEmitter<void>();
  private readonly stateEmitter = new EventEmitter<unknown>();
  private readonly activityEmitter = new EventEmitter<unknown>();
  readonly onActivity = this.activityEmitter.event as unknown as BottleServerPort["onActivity"];
  readonly onBottlesChanged = this.bottlesEmitter.event as unknown as BottleServerPort["onBottlesChanged"];
  readonly onStateChanged = this.stateEmitter.event as unknown as BottleServerPort["onStateChanged"];
  private sinks = new Map<string, (value: WorkDoneValue) => void>();

  /** What the server would send as `$/progress` on a token the client passed. */
  progress(token: string, value: WorkDoneValue): void {
    this.sinks.get(token)?.(value);
  }

  async execute(command: string, args: unknown[], workDoneToken?: string): Promise<unknown> {
    this.requests.push({ command, args, ...(workDoneToken === undefined ? {} : { workDoneToken }) });
    if (!this.answers.has(command)) throw new Error(`unexpected request ${command}`);
    const answer = this.answers.get(command);
    if (typeof answer === "function") return answer(args, this, workDoneToken);
    if (answer instanceof Error) throw answer;
    return answer;
  }

  async withProgressSink<T>(token: string, sink: (value: WorkDoneValue) => void, work: () => Promise<T>): Promise<T> {
    this.sinks.set(token, sink);
    try {
      return await work();
    } finally {
      this.sinks.delete(token);
    }
  }

  /** What the server would push as `bottle/activity`. */
  pushActivity(params: unknown): void {
    this.activityEmitter.fire(params);
  }

  /** A server state change (`running` makes the activity store ask for the picture). */
  setState(state: string): void {
    this.stateEmitter.fire(state);
  }

  notifyBottlesChanged(): void {
    this.bottlesChangedCount++;
    this.bottlesEmitter.fire();
  }
}
