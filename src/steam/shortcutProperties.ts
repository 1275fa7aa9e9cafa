// The SetShortcut* calls that give a new shortcut what AddShortcut ignored.
// Quirk (all four): they only stick once the app overview exists; call waitForAppOverview first.
import { trySteamCall } from "./log";

export function setShortcutName(appId: number, name: string): boolean {
  return trySteamCall("SetShortcutName", () => SteamClient.Apps.SetShortcutName(appId, name));
}

export function setShortcutExe(appId: number, exe: string): boolean {
  return trySteamCall("SetShortcutExe", () => SteamClient.Apps.SetShortcutExe(appId, exe));
}

export function setShortcutStartDir(appId: number, startDir: string): boolean {
  return trySteamCall("SetShortcutStartDir", () => SteamClient.Apps.SetShortcutStartDir(appId, startDir));
}

export function setShortcutLaunchOptions(appId: number, launchOptions: string): boolean {
  return trySteamCall("SetShortcutLaunchOptions", () =>
    SteamClient.Apps.SetShortcutLaunchOptions(appId, launchOptions),
  );
}

// The icon is a file path, not artwork bytes: Steam shows it in lists and the overlay.
export function setShortcutIcon(appId: number, path: string): boolean {
  return trySteamCall("SetShortcutIcon", () => SteamClient.Apps.SetShortcutIcon(appId, path));
}
