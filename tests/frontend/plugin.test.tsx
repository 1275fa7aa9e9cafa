import { act, render, screen } from "@testing-library/react";
import type { ReactElement } from "react";
import { beforeEach, describe, expect, it } from "vitest";

import definePluginFn from "../../src/index";
import * as fixtures from "./fixtures";
import { installFakeSteam } from "./fakeSteam";
import { answer, callsTo, emit, listenerCount, toasts } from "./mocks/decky-api";

interface PluginShape {
  name: string;
  content: ReactElement;
  icon: ReactElement;
  onDismount(): void;
}

beforeEach(() => {
  installFakeSteam();
  answer("pending_steam_requests", () => []);
  answer("get_state", () => fixtures.idle);
});

describe("definePlugin", () => {
  it("registers the global listeners at start and removes them on dismount", async () => {
    const plugin = definePluginFn() as unknown as PluginShape;
    expect(plugin.name).toBe("CapyDeploy");
    expect(listenerCount("steam_request")).toBe(1);
    expect(listenerCount("game_installed")).toBe(1);
    await act(async () => undefined);
    expect(callsTo("pending_steam_requests")).toEqual([[]]);
    plugin.onDismount();
    expect(listenerCount("steam_request")).toBe(0);
    expect(listenerCount("game_installed")).toBe(0);
  });

  it("toasts an installed game even with the panel closed", () => {
    const plugin = definePluginFn() as unknown as PluginShape;
    emit("game_installed", { gameName: "Celeste", path: "/home/deck/Games/Celeste", appId: 3672303389 });
    emit("game_installed", { gameName: "Tool", path: "/home/deck/Games/Tool", appId: null });
    expect(toasts.map((t) => t.body)).toEqual(["Celeste installed and added to Steam", "Tool installed"]);
    plugin.onDismount();
  });

  it("its content is the panel", async () => {
    const plugin = definePluginFn() as unknown as PluginShape;
    await act(async () => {
      render(plugin.content);
    });
    expect(screen.getByText("192.168.1.42:9999")).toBeInTheDocument();
    plugin.onDismount();
  });
});
