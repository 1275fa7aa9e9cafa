// The agent's snapshot for the panel: pulled on mount, then kept live by "state" events.
import { useEffect, useState } from "react";

import { getState, listen, type AgentSnapshot } from "./backend";

export interface AgentView {
  snapshot: AgentSnapshot;
  /** Date.now() when it arrived: the snapshot's relative times (expiresIn…) count from here. */
  receivedAt: number;
}

export function useAgentState(): { view: AgentView | null; error: string | null } {
  const [view, setView] = useState<AgentView | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let mounted = true;
    let gotEvent = false;
    const show = (snapshot: AgentSnapshot): void => {
      if (mounted) setView({ snapshot, receivedAt: Date.now() });
    };
    const stop = listen("state", (snapshot) => {
      gotEvent = true;
      show(snapshot);
    });
    getState().then(
      (snapshot) => {
        // An event that arrived first is newer than this answer.
        if (!gotEvent) show(snapshot);
      },
      (reason: unknown) => {
        if (mounted) setError(String(reason));
      },
    );
    return () => {
      mounted = false;
      stop();
    };
  }, []);
  return { view, error };
}
