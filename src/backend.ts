// Typed wrappers for every backend call and event; the rest of the panel never names a route.
import { addEventListener, callable, removeEventListener } from "@decky/api";

import type { AgentSnapshot } from "./generated/state";
import type { SteamRequest, SteamRequestResult } from "./steam/types";

export type * from "./generated/state";

export const getState = callable<[], AgentSnapshot>("get_state");
export const setAcceptConnections = callable<[on: boolean], void>("set_accept_connections");
export const cancelUpload = callable<[], void>("cancel_upload");
export const revokeHub = callable<[hubId: string], void>("revoke_hub");
export const disconnectHub = callable<[], void>("disconnect_hub");
export const resetPairingLockout = callable<[], void>("reset_pairing_lockout");
export const setAgentName = callable<[name: string], void>("set_agent_name");
export const setInstallDir = callable<[path: string], void>("set_install_dir");
export const pendingSteamRequests = callable<[], SteamRequest[]>("pending_steam_requests");
export const steamRequestDone = callable<[requestId: string, result: SteamRequestResult], void>(
  "steam_request_done",
);

export interface GameInstalled {
  gameName: string;
  path: string;
  appId: number | null;
}

export interface BackendEvents {
  state: AgentSnapshot;
  game_installed: GameInstalled;
  steam_request: SteamRequest;
}

/** Listens to one backend event; returns the function that stops listening. */
export function listen<E extends keyof BackendEvents>(
  event: E,
  listener: (payload: BackendEvents[E]) => void,
): () => void {
  const registered = addEventListener<[BackendEvents[E]]>(event, listener);
  return () => removeEventListener(event, registered);
}
