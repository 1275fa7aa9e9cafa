// What to type into the hub to reach this Deck, and where games land.
import { Field, PanelSection, PanelSectionRow } from "@decky/ui";

import type { AgentSnapshot } from "../backend";

type AgentInfo = Pick<AgentSnapshot, "name" | "addresses" | "port" | "installDir" | "running" | "error">;

export function AgentInfoSection({ agent }: { agent: AgentInfo }) {
  return (
    <PanelSection title="Where to point the hub">
      {agent.error && (
        <PanelSectionRow>
          <Field focusable label="Agent error" description={agent.error} />
        </PanelSectionRow>
      )}
      <PanelSectionRow>
        <Field focusable label="Name" description={agent.running ? undefined : "Agent is not running"}>
          {agent.name}
        </Field>
      </PanelSectionRow>
      {agent.addresses.length === 0 ? (
        <PanelSectionRow>
          <Field focusable label="Address" description="No network: connect this Deck to Wi-Fi." />
        </PanelSectionRow>
      ) : (
        agent.addresses.map((address) => (
          <PanelSectionRow key={address}>
            <Field focusable label="Address">
              {`${address}:${agent.port}`}
            </Field>
          </PanelSectionRow>
        ))
      )}
      <PanelSectionRow>
        <Field focusable label="Install folder" childrenLayout="below">
          {agent.installDir}
        </Field>
      </PanelSectionRow>
    </PanelSection>
  );
}
