// The only place that touches SteamClient (and Steam's appStore), so tests can fake it whole.
export { addShortcut } from "./addShortcut";
export { waitForAppOverview } from "./appOverview";
export { setArtwork } from "./artwork";
export { PROTON_EXPERIMENTAL, setCompatTool } from "./compatTool";
export { removeShortcut } from "./removeShortcut";
export {
  setShortcutExe,
  setShortcutIcon,
  setShortcutLaunchOptions,
  setShortcutName,
  setShortcutStartDir,
} from "./shortcutProperties";
export type * from "./types";
