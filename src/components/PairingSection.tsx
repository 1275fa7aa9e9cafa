// The pairing code a hub is waiting for (shown only here, never sent), or the lockout after wrong codes.
import { ButtonItem, Field, PanelSection, PanelSectionRow } from "@decky/ui";

import { resetPairingLockout, type PendingPairing } from "../backend";
import { formatDuration, formatPairingCode } from "../format";
import { runAction } from "../toasts";
import { useCountdown } from "./useCountdown";

const codeStyle = {
  fontSize: "44px",
  fontWeight: 700,
  letterSpacing: "0.12em",
  lineHeight: 1.1,
  textAlign: "center",
  fontVariantNumeric: "tabular-nums",
  color: "#ffffff",
  width: "100%",
} as const;

export function PairingSection(props: {
  pairing: PendingPairing | null;
  lockoutRemaining: number;
  receivedAt: number;
}) {
  if (props.pairing) return <PairingCode pairing={props.pairing} receivedAt={props.receivedAt} />;
  if (props.lockoutRemaining > 0) return <Lockout seconds={props.lockoutRemaining} receivedAt={props.receivedAt} />;
  return null;
}

function PairingCode({ pairing, receivedAt }: { pairing: PendingPairing; receivedAt: number }) {
  const left = useCountdown(pairing.expiresIn, receivedAt);
  return (
    <PanelSection title="Pairing">
      <PanelSectionRow>
        <Field
          focusable
          childrenLayout="below"
          label={`Type this code on ${pairing.hubName}`}
          description={left > 0 ? `Expires in ${formatDuration(left)}` : "Expired"}
        >
          <div style={codeStyle} aria-label="Pairing code">
            {formatPairingCode(pairing.code)}
          </div>
        </Field>
      </PanelSectionRow>
    </PanelSection>
  );
}

function Lockout({ seconds, receivedAt }: { seconds: number; receivedAt: number }) {
  const left = useCountdown(seconds, receivedAt);
  return (
    <PanelSection title="Pairing">
      <PanelSectionRow>
        <Field
          focusable
          label="Pairing locked"
          description={`Too many wrong codes. Pairing opens again in ${formatDuration(left)}.`}
        />
      </PanelSectionRow>
      <PanelSectionRow>
        <ButtonItem layout="below" onClick={() => runAction("unlock pairing", resetPairingLockout)}>
          Allow pairing now
        </ButtonItem>
      </PanelSectionRow>
    </PanelSection>
  );
}
