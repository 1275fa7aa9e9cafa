import { delay } from "./delay";

const POLL_MS = 100;

/**
 * Waits until Steam's app store knows the app; false on timeout.
 *
 * Quirk: AddShortcut resolves before the new shortcut's overview exists, and SetShortcut* calls
 * made before then are silently lost.
 */
export async function waitForAppOverview(appId: number, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (window.appStore?.GetAppOverviewByAppID(appId)) return true;
    if (Date.now() >= deadline) return false;
    await delay(POLL_MS);
  }
}
