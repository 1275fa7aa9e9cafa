import { beforeEach, describe, expect, it, vi } from "vitest";

import type { SteamRequest } from "../../src/steam/types";
import { handleRequest, startSteamRequestListener } from "../../src/steamRequests";
import { installFakeSteam, type FakeSteam } from "./fakeSteam";
import { answer, callsTo, deferred, emit, listenerCount } from "./mocks/decky-api";

const create: SteamRequest = {
  id: "req-1",
  kind: "create",
  name: "Hollow Knight",
  exe: "/home/deck/Games/Hollow Knight/hollow_knight.exe",
  startDir: "/home/deck/Games/Hollow Knight",
  launchOptions: "-windowed",
};

let steam: FakeSteam;

beforeEach(() => {
  steam = installFakeSteam(3_000_000_001);
  answer("steam_request_done", () => null);
  answer("pending_steam_requests", () => []);
  vi.spyOn(console, "error").mockImplementation(() => undefined);
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});

describe("a create request", () => {
  it("makes the shortcut whole after AddShortcut and reports its app id", async () => {
    await handleRequest(create);
    const shortcut = steam.shortcuts.get(3_000_000_001)!;
    // The fake AddShortcut, like Steam's, ignores the name and launch options.
    expect(shortcut).toMatchObject({
      name: "Hollow Knight",
      exe: create.exe,
      startDir: "/home/deck/Games/Hollow Knight",
      launchOptions: "-windowed",
      compatTool: "proton_experimental",
    });
    expect(steam.calls.slice(0, 5)).toEqual([
      "AddShortcut",
      "SetShortcutName",
      "SetShortcutExe",
      "SetShortcutStartDir",
      "SetShortcutLaunchOptions",
    ]);
    expect(callsTo("steam_request_done")).toEqual([["req-1", { ok: true, appId: 3_000_000_001 }]]);
  });

  it("picks no compatibility tool for a Linux binary, and honours an explicit one", async () => {
    await handleRequest({ ...create, id: "linux", exe: "/home/deck/Games/Celeste/Celeste" });
    await handleRequest({ ...create, id: "explicit", compatTool: "proton_9" });
    await handleRequest({ ...create, id: "none", compatTool: null });
    expect([...steam.shortcuts.values()].map((s) => s.compatTool)).toEqual([null, "proton_9", null]);
  });

  it("clears, waits, then sets each piece of artwork", async () => {
    vi.useFakeTimers();
    const done = handleRequest({
      ...create,
      artwork: [
        { assetType: 0, data: "cG9ydHJhaXQ=", format: "png" },
        { assetType: 1, data: "aGVybw==", format: "jpg" },
      ],
    });
    await vi.advanceTimersByTimeAsync(400);
    expect(steam.calls.filter((c) => c === "SetCustomArtworkForApp")).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(2_000);
    await done;
    const artwork = steam.shortcuts.get(3_000_000_001)!.artwork;
    expect(artwork.get(0)).toEqual({ data: "cG9ydHJhaXQ=", format: "png" });
    expect(artwork.get(1)).toEqual({ data: "aGVybw==", format: "jpg" });
    expect(callsTo("steam_request_done")).toEqual([["req-1", { ok: true, appId: 3_000_000_001 }]]);
  });

  it("keeps the shortcut when only its artwork fails", async () => {
    vi.useFakeTimers();
    steam.failing.add("SetCustomArtworkForApp");
    const done = handleRequest({ ...create, artwork: [{ assetType: 2, data: "bG9nbw==", format: "png" }] });
    await vi.advanceTimersByTimeAsync(1_000);
    await done;
    expect(steam.shortcuts.size).toBe(1);
    expect(callsTo("steam_request_done")).toEqual([["req-1", { ok: true, appId: 3_000_000_001 }]]);
  });

  it("removes the half-made shortcut when a later step fails", async () => {
    steam.failing.add("SetShortcutExe");
    await handleRequest(create);
    expect(steam.calls).toContain("RemoveShortcut");
    expect(steam.shortcuts.size).toBe(0);
    expect(callsTo("steam_request_done")).toEqual([
      ["req-1", { ok: false, error: "Steam refused to set the shortcut's executable" }],
    ]);
  });

  it("removes the shortcut when Steam never lists it", async () => {
    vi.useFakeTimers();
    steam.overviewsAppear = false;
    const done = handleRequest(create);
    await vi.advanceTimersByTimeAsync(6_000);
    await done;
    expect(steam.calls).not.toContain("SetShortcutName");
    expect(steam.shortcuts.size).toBe(0);
    expect(callsTo("steam_request_done")).toEqual([
      ["req-1", { ok: false, error: "Steam did not list the new shortcut in time" }],
    ]);
  });

  it("reports a failed AddShortcut, with nothing to roll back", async () => {
    steam.failing.add("AddShortcut");
    await handleRequest(create);
    expect(steam.calls).toEqual(["AddShortcut"]);
    expect(callsTo("steam_request_done")).toEqual([
      ["req-1", { ok: false, error: "Steam did not create the shortcut" }],
    ]);
  });
});

describe("the other requests", () => {
  beforeEach(async () => {
    await handleRequest(create);
  });

  it("renames", async () => {
    await handleRequest({ id: "r", kind: "rename", appId: 3_000_000_001, name: "HK" });
    expect(steam.shortcuts.get(3_000_000_001)!.name).toBe("HK");
    expect(callsTo("steam_request_done").at(-1)).toEqual(["r", { ok: true, appId: 3_000_000_001 }]);
  });

  it("sets the icon from the file the backend wrote", async () => {
    await handleRequest({ id: "i", kind: "icon", appId: 3_000_000_001, path: "/home/deck/grid/1_icon.png" });
    expect(steam.shortcuts.get(3_000_000_001)!.icon).toBe("/home/deck/grid/1_icon.png");
    expect(callsTo("steam_request_done").at(-1)).toEqual(["i", { ok: true, appId: 3_000_000_001 }]);
  });

  it("removes", async () => {
    await handleRequest({ id: "x", kind: "remove", appId: 3_000_000_001 });
    expect(steam.shortcuts.size).toBe(0);
    expect(callsTo("steam_request_done").at(-1)).toEqual(["x", { ok: true, appId: 3_000_000_001 }]);
  });

  it("sets artwork, and names the slots Steam refused", async () => {
    vi.useFakeTimers();
    const art = handleRequest({
      id: "a",
      kind: "artwork",
      appId: 3_000_000_001,
      artwork: [{ assetType: 3, data: "d2lkZQ==", format: "png" }],
    });
    await vi.advanceTimersByTimeAsync(1_000);
    await art;
    expect(steam.shortcuts.get(3_000_000_001)!.artwork.get(3)).toEqual({ data: "d2lkZQ==", format: "png" });
    expect(callsTo("steam_request_done").at(-1)).toEqual(["a", { ok: true, appId: 3_000_000_001 }]);

    steam.failing.add("ClearCustomArtworkForApp");
    await handleRequest({ id: "b", kind: "artwork", appId: 3_000_000_001, artwork: [{ assetType: 1, data: "", format: "jpg" }] });
    expect(callsTo("steam_request_done").at(-1)).toEqual([
      "b",
      { ok: false, error: "Steam refused the artwork for asset types 1" },
    ]);
  });

  it("reports a refused rename or remove", async () => {
    steam.failing.add("SetShortcutName");
    steam.failing.add("RemoveShortcut");
    await handleRequest({ id: "r", kind: "rename", appId: 3_000_000_001, name: "HK" });
    await handleRequest({ id: "x", kind: "remove", appId: 3_000_000_001 });
    expect(callsTo("steam_request_done").slice(-2)).toEqual([
      ["r", { ok: false, error: "Steam refused to rename the shortcut" }],
      ["x", { ok: false, error: "Steam refused to remove the shortcut" }],
    ]);
  });
});

describe("the request listener", () => {
  it("performs the requests queued while nobody listened, then live ones", async () => {
    answer("pending_steam_requests", () => [create, { ...create, id: "req-2", name: "Celeste" }]);
    const stop = startSteamRequestListener();
    await vi.waitFor(() => expect(callsTo("steam_request_done")).toHaveLength(2));
    emit("steam_request", { id: "req-3", kind: "rename", appId: 3_000_000_002, name: "Celeste!" });
    await vi.waitFor(() => expect(callsTo("steam_request_done")).toHaveLength(3));
    expect(callsTo("steam_request_done").map(([id]) => id)).toEqual(["req-1", "req-2", "req-3"]);
    expect(steam.shortcuts.get(3_000_000_002)!.name).toBe("Celeste!");
    stop();
    expect(listenerCount("steam_request")).toBe(0);
  });

  it("does a request once when it arrives both as an event and in the pulled list", async () => {
    answer("pending_steam_requests", () => new Promise((resolve) => setTimeout(() => resolve([create]), 10)));
    const stop = startSteamRequestListener();
    emit("steam_request", create);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(steam.calls.filter((c) => c === "AddShortcut")).toHaveLength(1);
    expect(callsTo("steam_request_done")).toHaveLength(1);
    stop();
  });

  it("ignores a pull that answers after it was stopped", async () => {
    const pulled = deferred<SteamRequest[]>();
    answer("pending_steam_requests", () => pulled.promise);
    const stop = startSteamRequestListener();
    stop();
    pulled.resolve([create]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(steam.calls).toEqual([]);
  });

  it("keeps listening when the start-up pull fails", async () => {
    answer("pending_steam_requests", () => Promise.reject(new Error("not started yet")));
    const stop = startSteamRequestListener();
    emit("steam_request", create);
    await vi.waitFor(() => expect(callsTo("steam_request_done")).toHaveLength(1));
    stop();
  });
});
