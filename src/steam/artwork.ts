import { delay } from "./delay";
import { logSteamError } from "./log";
import type { Artwork } from "./types";

export const CLEAR_SETTLE_MS = 500;

/**
 * Sets one custom image (grid, hero, logo, wide grid) so it shows at once, without a restart.
 *
 * Quirk: the slot is cleared first so an older custom image cannot win, but
 * ClearCustomArtworkForApp resolves before the clear is done: setting at once could be wiped
 * by the late clear, hence the wait.
 */
export async function setArtwork(appId: number, artwork: Artwork): Promise<boolean> {
  try {
    await SteamClient.Apps.ClearCustomArtworkForApp(appId, artwork.assetType);
    await delay(CLEAR_SETTLE_MS);
    await SteamClient.Apps.SetCustomArtworkForApp(appId, artwork.data, artwork.format, artwork.assetType);
    return true;
  } catch (error) {
    logSteamError("SetCustomArtworkForApp", error);
    return false;
  }
}
