// The quick-access panel: the sections in the order a user needs them (urgent ones first).
import { Field, PanelSection, PanelSectionRow } from "@decky/ui";

import { useAgentState } from "../useAgentState";
import { AgentInfoSection } from "./AgentInfoSection";
import { AuthorizedHubsSection } from "./AuthorizedHubsSection";
import { ConnectionSection } from "./ConnectionSection";
import { PairingSection } from "./PairingSection";
import { RecentInstallsSection } from "./RecentInstallsSection";
import { UploadSection } from "./UploadSection";

export function Panel() {
  const { view, error } = useAgentState();
  if (!view) {
    return (
      <PanelSection>
        <PanelSectionRow>
          <Field
            focusable
            label={error ? "The agent did not answer" : "Loading…"}
            description={error ?? undefined}
          />
        </PanelSectionRow>
      </PanelSection>
    );
  }
  const { snapshot, receivedAt } = view;
  return (
    <>
      <PairingSection
        pairing={snapshot.pairing}
        lockoutRemaining={snapshot.lockoutRemaining}
        receivedAt={receivedAt}
      />
      <UploadSection upload={snapshot.upload} />
      <ConnectionSection acceptConnections={snapshot.acceptConnections} connectedHub={snapshot.connectedHub} />
      <AgentInfoSection agent={snapshot} />
      <AuthorizedHubsSection hubs={snapshot.authorizedHubs} />
      <RecentInstallsSection games={snapshot.recentInstalls} />
    </>
  );
}
