// Steam toasts: "game installed" (shown even with the menu closed) and failed panel actions.
import { toaster } from "@decky/api";

import { listen } from "./backend";

const TITLE = "CapyDeploy";

/** Toasts every installed game; returns the stop function. */
export function startInstallToasts(): () => void {
  return listen("game_installed", ({ gameName, appId }) => {
    toaster.toast({
      title: TITLE,
      body: appId === null ? `${gameName} installed` : `${gameName} installed and added to Steam`,
    });
  });
}

/** Runs a panel action, toasting its failure instead of losing it in an unhandled rejection. */
export function runAction(what: string, action: () => Promise<unknown>): void {
  action().catch((error: unknown) => {
    console.error(`[CapyDeploy] ${what} failed:`, error);
    toaster.toast({ title: TITLE, body: `Could not ${what}: ${String(error)}` });
  });
}
