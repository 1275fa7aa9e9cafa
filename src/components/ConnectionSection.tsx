// Whether hubs may connect, and the hub that is connected now.
import { ButtonItem, Field, PanelSection, PanelSectionRow, ToggleField } from "@decky/ui";

import { disconnectHub, setAcceptConnections, type ConnectedHub } from "../backend";
import { runAction } from "../toasts";

export function ConnectionSection(props: { acceptConnections: boolean; connectedHub: ConnectedHub | null }) {
  const hub = props.connectedHub;
  return (
    <PanelSection title="Connection">
      <PanelSectionRow>
        <ToggleField
          label="Accept connections"
          description={
            props.acceptConnections
              ? "Hubs can connect to this Deck."
              : "Blocked: every hub is refused until you turn this on."
          }
          checked={props.acceptConnections}
          onChange={(on) => runAction("change the connection setting", () => setAcceptConnections(on))}
        />
      </PanelSectionRow>
      <PanelSectionRow>
        {hub ? (
          <ButtonItem
            label={hub.name}
            description={`${hub.authenticated ? "Connected" : "Waiting for pairing"} · ${hub.platform} · ${hub.address}`}
            onClick={() => runAction("disconnect the hub", disconnectHub)}
          >
            Disconnect
          </ButtonItem>
        ) : (
          <Field focusable label="No hub connected" />
        )}
      </PanelSectionRow>
    </PanelSection>
  );
}
