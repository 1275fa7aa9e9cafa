import { trySteamCall } from "./log";

/**
 * Removes a shortcut. Also the roll-back for a half-made one: a nameless duplicate left behind
 * confuses Steam and the user on the next try.
 */
export function removeShortcut(appId: number): boolean {
  return trySteamCall("RemoveShortcut", () => SteamClient.Apps.RemoveShortcut(appId));
}
