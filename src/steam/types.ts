// The shortcut requests the backend hands the frontend, and the results it expects back.

/** Steam's library asset slots: 0 portrait grid, 1 hero, 2 logo, 3 wide grid. */
export type ArtworkAssetType = 0 | 1 | 2 | 3;

export interface Artwork {
  assetType: ArtworkAssetType;
  /** Image bytes, base64. */
  data: string;
  format: "png" | "jpg";
}

export interface CreateShortcutRequest {
  id: string;
  kind: "create";
  name: string;
  exe: string;
  startDir: string;
  launchOptions: string;
  tags?: string[];
  /** A tool name; `null` means none; absent means Proton Experimental for a Windows `.exe`. */
  compatTool?: string | null;
  artwork?: Artwork[];
}

export interface RenameShortcutRequest {
  id: string;
  kind: "rename";
  appId: number;
  name: string;
}

export interface RemoveShortcutRequest {
  id: string;
  kind: "remove";
  appId: number;
}

export interface ArtworkRequest {
  id: string;
  kind: "artwork";
  appId: number;
  artwork: Artwork[];
}

export interface IconRequest {
  id: string;
  kind: "icon";
  appId: number;
  /** Absolute path of the icon file the backend wrote into Steam's grid folder. */
  path: string;
}

export type SteamRequest =
  | CreateShortcutRequest
  | RenameShortcutRequest
  | RemoveShortcutRequest
  | ArtworkRequest
  | IconRequest;

export type SteamRequestResult = { ok: true; appId: number } | { ok: false; error: string };
