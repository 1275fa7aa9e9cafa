import { act, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import type { AgentSnapshot } from "../../src/backend";
import { Panel } from "../../src/components/Panel";
import * as fixtures from "./fixtures";
import { answer, callsTo, deferred, emit, listenerCount, toasts } from "./mocks/decky-api";

/** Renders the panel with get_state answering `snapshot`, and lets that answer land. */
async function renderPanel(snapshot: AgentSnapshot) {
  answer("get_state", () => snapshot);
  for (const route of [
    "set_accept_connections",
    "cancel_upload",
    "revoke_hub",
    "disconnect_hub",
    "reset_pairing_lockout",
  ]) {
    answer(route, () => null);
  }
  let view!: ReturnType<typeof render>;
  await act(async () => {
    view = render(<Panel />);
  });
  return view;
}

function section(title: string): HTMLElement {
  return screen.getByRole("heading", { name: title }).closest("section")!;
}

describe("the panel", () => {
  it("says it is loading until the first state arrives, then shows it", async () => {
    const state = deferred<AgentSnapshot>();
    answer("get_state", () => state.promise);
    render(<Panel />);
    expect(screen.getByText("Loading…")).toBeInTheDocument();
    await act(async () => state.resolve(fixtures.idle));
    expect(screen.getByText("Steam Deck")).toBeInTheDocument();
  });

  it("says so when the agent does not answer", async () => {
    answer("get_state", () => Promise.reject(new Error("backend down")));
    await act(async () => {
      render(<Panel />);
    });
    expect(screen.getByText("The agent did not answer")).toBeInTheDocument();
    expect(screen.getByText(/backend down/)).toBeInTheDocument();
  });

  it("idle: shows where to point the hub, accepts connections, no pairing or upload", async () => {
    await renderPanel(fixtures.idle);
    const info = section("Where to point the hub");
    expect(within(info).getByText("Steam Deck")).toBeInTheDocument();
    expect(within(info).getByText("192.168.1.42:9999")).toBeInTheDocument();
    expect(within(info).getByText("/home/deck/Games")).toBeInTheDocument();
    expect(screen.getByRole("switch", { name: "Accept connections" })).toBeChecked();
    expect(screen.getByText("No hub connected")).toBeInTheDocument();
    expect(screen.queryByRole("heading", { name: "Pairing" })).toBeNull();
    expect(screen.queryByRole("progressbar")).toBeNull();
    expect(within(section("Recently installed")).getByText("Celeste")).toBeInTheDocument();
  });

  it("rows are focusable for the gamepad", async () => {
    await renderPanel(fixtures.idle);
    const addressRow = screen.getByText("192.168.1.42:9999").closest(".qam-field")!;
    expect(addressRow).toHaveAttribute("tabindex", "0");
  });

  it("pairing: shows the code large with a countdown that ticks", async () => {
    vi.useFakeTimers();
    await renderPanel(fixtures.pairing);
    const pairingSection = section("Pairing");
    expect(within(pairingSection).getByLabelText("Pairing code")).toHaveTextContent("482 913");
    expect(within(pairingSection).getByText("Type this code on Living-room PC")).toBeInTheDocument();
    expect(within(pairingSection).getByText("Expires in 1:00")).toBeInTheDocument();
    await act(async () => vi.advanceTimersByTime(5_000));
    expect(within(pairingSection).getByText("Expires in 0:55")).toBeInTheDocument();
    await act(async () => vi.advanceTimersByTime(60_000));
    expect(within(pairingSection).getByText("Expired")).toBeInTheDocument();
  });

  it("lockout: explains it and the reset button lifts it", async () => {
    const user = userEvent.setup();
    await renderPanel(fixtures.lockout);
    const pairingSection = section("Pairing");
    expect(within(pairingSection).getByText("Pairing locked")).toBeInTheDocument();
    expect(within(pairingSection).getByText(/opens again in 4:47/)).toBeInTheDocument();
    await user.click(within(pairingSection).getByRole("button", { name: "Allow pairing now" }));
    expect(callsTo("reset_pairing_lockout")).toEqual([[]]);
  });

  it("uploading: shows game, current file, speed and time left", async () => {
    await renderPanel(fixtures.uploading);
    const receiving = section("Receiving");
    expect(within(receiving).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "42");
    expect(within(receiving).getByText("Hollow Knight")).toBeInTheDocument();
    expect(within(receiving).getByText("Hollow Knight_Data/resources.assets")).toBeInTheDocument();
    expect(within(receiving).getByText("12.5 MB/s · 1:23 left")).toBeInTheDocument();
  });

  it("uploading without an estimate shows the speed only", async () => {
    await renderPanel({ ...fixtures.uploading, upload: { ...fixtures.uploading.upload!, secondsRemaining: null } });
    expect(screen.getByText("12.5 MB/s")).toBeInTheDocument();
  });

  it("cancelling an upload asks first, and only the confirmation cancels", async () => {
    const user = userEvent.setup();
    await renderPanel(fixtures.uploading);
    await user.click(screen.getByRole("button", { name: "Cancel upload" }));
    let dialog = screen.getByRole("dialog");
    expect(dialog).toHaveTextContent("Cancel receiving Hollow Knight?");
    await user.click(within(dialog).getByRole("button", { name: "Keep receiving" }));
    expect(callsTo("cancel_upload")).toEqual([]);
    await vi.waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());

    await user.click(screen.getByRole("button", { name: "Cancel upload" }));
    dialog = screen.getByRole("dialog");
    await user.click(within(dialog).getByRole("button", { name: "Cancel upload" }));
    expect(callsTo("cancel_upload")).toEqual([[]]);
    await vi.waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
  });

  it("blocked: the toggle is off and says hubs are refused", async () => {
    await renderPanel(fixtures.blocked);
    expect(screen.getByRole("switch", { name: "Accept connections" })).not.toBeChecked();
    expect(screen.getByText(/Blocked: every hub is refused/)).toBeInTheDocument();
  });

  it("the toggle calls set_accept_connections with the new value", async () => {
    const user = userEvent.setup();
    await renderPanel(fixtures.idle);
    await user.click(screen.getByRole("switch", { name: "Accept connections" }));
    expect(callsTo("set_accept_connections")).toEqual([[false]]);
  });

  it("connected hub: shows it and disconnects it", async () => {
    const user = userEvent.setup();
    await renderPanel(fixtures.connected);
    const connection = section("Connection");
    expect(within(connection).getByText("Desk PC")).toBeInTheDocument();
    expect(within(connection).getByText("Connected · windows · 192.168.1.10")).toBeInTheDocument();
    await user.click(within(connection).getByRole("button", { name: "Disconnect" }));
    expect(callsTo("disconnect_hub")).toEqual([[]]);
  });

  it("authorized hubs: lists them and revokes the chosen one", async () => {
    const user = userEvent.setup();
    await renderPanel(fixtures.withHubs);
    const hubs = section("Paired hubs");
    expect(within(hubs).getByText("Desk PC")).toBeInTheDocument();
    expect(within(hubs).getByText("Laptop")).toBeInTheDocument();
    const laptopRow = within(hubs).getByText("Laptop").closest(".qam-field") as HTMLElement;
    await user.click(within(laptopRow).getByRole("button", { name: "Revoke" }));
    expect(callsTo("revoke_hub")).toEqual([["hub-laptop"]]);
  });

  it("no authorized hub yet", async () => {
    await renderPanel({ ...fixtures.idle, authorizedHubs: [] });
    expect(within(section("Paired hubs")).getByText("No hub paired yet")).toBeInTheDocument();
  });

  it("follows live 'state' events and stops listening when closed", async () => {
    const view = await renderPanel(fixtures.idle);
    expect(listenerCount("state")).toBe(1);
    await act(async () => emit("state", fixtures.uploading));
    expect(screen.getByRole("progressbar")).toBeInTheDocument();
    await act(async () => emit("state", fixtures.idle));
    expect(screen.queryByRole("progressbar")).toBeNull();
    view.unmount();
    expect(listenerCount("state")).toBe(0);
  });

  it("a state event that beats the first pull is not overwritten by it", async () => {
    const state = deferred<AgentSnapshot>();
    answer("get_state", () => state.promise);
    render(<Panel />);
    await act(async () => emit("state", fixtures.blocked));
    await act(async () => state.resolve(fixtures.idle));
    expect(screen.getByRole("switch", { name: "Accept connections" })).not.toBeChecked();
  });

  it("a failed action is toasted, not lost", async () => {
    const user = userEvent.setup();
    await renderPanel(fixtures.connected);
    answer("disconnect_hub", () => Promise.reject(new Error("no hub")));
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    await user.click(screen.getByRole("button", { name: "Disconnect" }));
    await vi.waitFor(() => expect(toasts).toHaveLength(1));
    expect(String(toasts[0].body)).toContain("Could not disconnect the hub");
  });

  it("shows the agent's error", async () => {
    await renderPanel({ ...fixtures.idle, running: false, error: "port 9999 is in use" });
    expect(screen.getByText("port 9999 is in use")).toBeInTheDocument();
    expect(screen.getByText("Agent is not running")).toBeInTheDocument();
  });
});
