// Carries out the backend's shortcut requests through SteamClient and reports each result.
import { listen, pendingSteamRequests, steamRequestDone } from "./backend";
import * as steam from "./steam";
import type { Artwork, CreateShortcutRequest, SteamRequest, SteamRequestResult } from "./steam/types";

/** Starts handling requests (live ones and those queued on disk); returns the stop function. */
export function startSteamRequestListener(): () => void {
  const seen = new Set<string>();
  let queue = Promise.resolve();
  let active = true;
  const enqueue = (request: SteamRequest): void => {
    // After a stop (plugin reload) a late pull must not race the new listener into duplicates.
    if (!active) return;
    // At start-up the same request can arrive twice: as an event and in the pulled list.
    if (seen.has(request.id)) return;
    seen.add(request.id);
    // One at a time: parallel AddShortcut calls would race on the overview wait and roll-backs.
    queue = queue.then(() => handleRequest(request));
  };
  const unsubscribe = listen("steam_request", enqueue);
  pendingSteamRequests().then(
    (requests) => requests.forEach(enqueue),
    (error: unknown) => console.error("[CapyDeploy] could not pull pending Steam requests:", error),
  );
  return () => {
    active = false;
    unsubscribe();
  };
}

export async function handleRequest(request: SteamRequest): Promise<void> {
  let result: SteamRequestResult;
  try {
    result = await performRequest(request);
  } catch (error) {
    result = failed(`unexpected error: ${String(error)}`);
  }
  try {
    await steamRequestDone(request.id, result);
  } catch (error) {
    console.error(`[CapyDeploy] could not report Steam request ${request.id}:`, error);
  }
}

export async function performRequest(request: SteamRequest): Promise<SteamRequestResult> {
  switch (request.kind) {
    case "create":
      return createShortcut(request);
    case "rename":
      return steam.setShortcutName(request.appId, request.name)
        ? { ok: true, appId: request.appId }
        : failed("Steam refused to rename the shortcut");
    case "remove":
      return steam.removeShortcut(request.appId)
        ? { ok: true, appId: request.appId }
        : failed("Steam refused to remove the shortcut");
    case "icon":
      return steam.setShortcutIcon(request.appId, request.path)
        ? { ok: true, appId: request.appId }
        : failed("Steam refused the shortcut's icon");
    case "artwork": {
      const error = await applyArtwork(request.appId, request.artwork);
      return error ? failed(error) : { ok: true, appId: request.appId };
    }
  }
}

async function createShortcut(request: CreateShortcutRequest): Promise<SteamRequestResult> {
  const appId = await steam.addShortcut(request.name, request.exe, request.startDir, request.launchOptions);
  if (appId === null) return failed("Steam did not create the shortcut");
  const error = await completeShortcut(appId, request);
  if (error) {
    steam.removeShortcut(appId);
    return failed(error);
  }
  // A missing picture is not worth losing a working shortcut: log it and report success.
  const artworkError = await applyArtwork(appId, request.artwork ?? []);
  if (artworkError) console.warn(`[CapyDeploy] shortcut ${appId}: ${artworkError}`);
  // request.tags are not applied: Steam keeps them as collections, which SteamClient cannot edit.
  return { ok: true, appId };
}

/** Gives the bare shortcut what AddShortcut ignored; returns an error message or null. */
async function completeShortcut(appId: number, request: CreateShortcutRequest): Promise<string | null> {
  if (!(await steam.waitForAppOverview(appId))) return "Steam did not list the new shortcut in time";
  const steps: [string, () => boolean][] = [
    ["name", () => steam.setShortcutName(appId, request.name)],
    ["executable", () => steam.setShortcutExe(appId, request.exe)],
    ["start folder", () => steam.setShortcutStartDir(appId, request.startDir)],
    ["launch options", () => steam.setShortcutLaunchOptions(appId, request.launchOptions)],
  ];
  for (const [what, step] of steps) {
    if (!step()) return `Steam refused to set the shortcut's ${what}`;
  }
  const tool = compatToolFor(request);
  if (tool && !steam.setCompatTool(appId, tool)) return `Steam refused the compatibility tool ${tool}`;
  return null;
}

function compatToolFor(request: CreateShortcutRequest): string | null {
  if (request.compatTool !== undefined) return request.compatTool;
  return /\.exe"?$/i.test(request.exe) ? steam.PROTON_EXPERIMENTAL : null;
}

/** Applies every image; returns an error naming the slots that failed, or null. */
async function applyArtwork(appId: number, artwork: Artwork[]): Promise<string | null> {
  const failedSlots: number[] = [];
  for (const image of artwork) {
    if (!(await steam.setArtwork(appId, image))) failedSlots.push(image.assetType);
  }
  return failedSlots.length ? `Steam refused the artwork for asset types ${failedSlots.join(", ")}` : null;
}

function failed(error: string): SteamRequestResult {
  return { ok: false, error };
}
