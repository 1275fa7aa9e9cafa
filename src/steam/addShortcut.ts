import { logSteamError } from "./log";

/**
 * Creates a bare shortcut and returns the app id Steam assigned, or null.
 *
 * Quirk: current Steam ignores most of AddShortcut's arguments (the name becomes the exe's file
 * name, launch options are dropped), so callers must follow it with the SetShortcut* calls once
 * the app overview exists (see waitForAppOverview).
 */
export async function addShortcut(
  name: string,
  exe: string,
  startDir: string,
  launchOptions: string,
): Promise<number | null> {
  try {
    const appId = await SteamClient.Apps.AddShortcut(name, exe, startDir, launchOptions);
    return typeof appId === "number" && appId > 0 ? appId : null;
  } catch (error) {
    logSteamError("AddShortcut", error);
    return null;
  }
}
