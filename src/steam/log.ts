// SteamClient calls fail by throwing or rejecting; the adapter turns that into a logged false/null.

export function logSteamError(action: string, error: unknown): void {
  console.error(`[CapyDeploy] SteamClient.Apps.${action} failed:`, error);
}

/** Runs one synchronous SteamClient call: true when it went through, false (logged) when it threw. */
export function trySteamCall(action: string, run: () => void): boolean {
  try {
    run();
    return true;
  } catch (error) {
    logSteamError(action, error);
    return false;
  }
}
