// A fake SteamClient.Apps (and appStore) that keeps shortcuts in a map, mimics AddShortcut's
// habit of ignoring its arguments, and can be told to fail any call.

export interface FakeShortcut {
  name: string;
  exe: string;
  startDir: string;
  launchOptions: string;
  compatTool: string | null;
  icon: string;
  artwork: Map<number, { data: string; format: string }>;
}

export interface FakeSteam {
  shortcuts: Map<number, FakeShortcut>;
  /** Method names in call order, e.g. "AddShortcut", "SetShortcutName". */
  calls: string[];
  /** Method names that throw (sync calls) or reject (async ones). */
  failing: Set<string>;
  /** When false, new shortcuts never get an app overview. */
  overviewsAppear: boolean;
}

export function installFakeSteam(firstAppId = 3_000_000_001): FakeSteam {
  const fake: FakeSteam = { shortcuts: new Map(), calls: [], failing: new Set(), overviewsAppear: true };
  let nextAppId = firstAppId;
  const step = (method: string): void => {
    fake.calls.push(method);
    if (fake.failing.has(method)) throw new Error(`${method} failed (fake)`);
  };
  const shortcut = (appId: number): FakeShortcut => {
    const found = fake.shortcuts.get(appId);
    if (!found) throw new Error(`no shortcut ${appId}`);
    return found;
  };
  const apps = {
    async AddShortcut(_name: string, exe: string): Promise<number> {
      step("AddShortcut");
      const appId = nextAppId++;
      const fileName = exe.split("/").pop() ?? exe;
      fake.shortcuts.set(appId, {
        name: fileName,
        exe,
        startDir: "",
        launchOptions: "",
        compatTool: null,
        icon: "",
        artwork: new Map(),
      });
      return appId;
    },
    SetShortcutName(appId: number, name: string) {
      step("SetShortcutName");
      shortcut(appId).name = name;
    },
    SetShortcutExe(appId: number, exe: string) {
      step("SetShortcutExe");
      shortcut(appId).exe = exe;
    },
    SetShortcutIcon(appId: number, path: string) {
      step("SetShortcutIcon");
      shortcut(appId).icon = path;
    },
    SetShortcutStartDir(appId: number, startDir: string) {
      step("SetShortcutStartDir");
      shortcut(appId).startDir = startDir;
    },
    SetShortcutLaunchOptions(appId: number, launchOptions: string) {
      step("SetShortcutLaunchOptions");
      shortcut(appId).launchOptions = launchOptions;
    },
    SpecifyCompatTool(appId: number, tool: string) {
      step("SpecifyCompatTool");
      shortcut(appId).compatTool = tool;
    },
    RemoveShortcut(appId: number) {
      step("RemoveShortcut");
      fake.shortcuts.delete(appId);
    },
    async ClearCustomArtworkForApp(appId: number, assetType: number) {
      step("ClearCustomArtworkForApp");
      shortcut(appId).artwork.delete(assetType);
    },
    async SetCustomArtworkForApp(appId: number, data: string, format: string, assetType: number) {
      step("SetCustomArtworkForApp");
      shortcut(appId).artwork.set(assetType, { data, format });
    },
  };
  Object.assign(globalThis, { SteamClient: { Apps: apps } });
  Object.assign(window, {
    appStore: {
      GetAppOverviewByAppID: (appId: number) =>
        fake.overviewsAppear && fake.shortcuts.has(appId) ? { appid: appId } : null,
    },
  });
  return fake;
}
