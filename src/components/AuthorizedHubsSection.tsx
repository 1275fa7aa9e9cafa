// Hubs that paired with this Deck; revoking one makes it pair again before its next upload.
import { ButtonItem, Field, PanelSection, PanelSectionRow } from "@decky/ui";

import { revokeHub, type AuthorizedHub } from "../backend";
import { formatDate } from "../format";
import { runAction } from "../toasts";

export function AuthorizedHubsSection({ hubs }: { hubs: AuthorizedHub[] }) {
  return (
    <PanelSection title="Paired hubs">
      {hubs.length === 0 ? (
        <PanelSectionRow>
          <Field focusable label="No hub paired yet" />
        </PanelSectionRow>
      ) : (
        hubs.map((hub) => (
          <PanelSectionRow key={hub.id}>
            <ButtonItem
              label={hub.name}
              description={`${hub.platform} · last seen ${formatDate(hub.lastSeen)}`}
              onClick={() => runAction(`revoke ${hub.name}`, () => revokeHub(hub.id))}
            >
              Revoke
            </ButtonItem>
          </PanelSectionRow>
        ))
      )}
    </PanelSection>
  );
}
