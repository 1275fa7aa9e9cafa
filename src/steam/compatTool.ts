import { trySteamCall } from "./log";

export const PROTON_EXPERIMENTAL = "proton_experimental";

/**
 * Forces a compatibility tool (Proton) for the app.
 *
 * Quirk: Steam never picks Proton for a non-Steam shortcut by itself, so a Windows .exe would
 * be started natively and fail.
 */
export function setCompatTool(appId: number, toolName: string): boolean {
  return trySteamCall("SpecifyCompatTool", () => SteamClient.Apps.SpecifyCompatTool(appId, toolName));
}
