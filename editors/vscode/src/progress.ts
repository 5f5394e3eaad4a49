/**
 * Translates LSP work-done progress (`$/progress` begin/report/end, absolute percentages)
 * into what VS Code's `Progress.report` wants (a message and a percentage *increment*).
 */

export interface WorkDoneValue {
  kind: "begin" | "report" | "end";
  title?: string;
  message?: string;
  percentage?: number;
}

export interface ProgressStep {
  message?: string;
  increment?: number;
}

export class ProgressTranslator {
  private reported = 0;

  /** What to pass to `progress.report`, or undefined when there is nothing to show. */
  next(value: WorkDoneValue): ProgressStep | undefined {
    const step: ProgressStep = {};
    const message = value.kind === "begin" ? (value.message ?? value.title) : value.message;
    if (message !== undefined && message !== "") step.message = message;
    const target =
      value.kind === "end" ? 100 : typeof value.percentage === "number" ? value.percentage : undefined;
    if (target !== undefined) {
      const clamped = Math.min(100, Math.max(this.reported, target));
      if (clamped > this.reported) step.increment = clamped - this.reported;
      this.reported = clamped;
    }
    return step.message === undefined && step.increment === undefined ? undefined : step;
  }
}
