// The game being received, with a cancel that asks first (a mis-press would waste the transfer).
import { ButtonItem, ConfirmModal, PanelSection, PanelSectionRow, ProgressBarWithInfo, showModal } from "@decky/ui";

import { cancelUpload, type UploadState } from "../backend";
import { formatDuration, formatRate } from "../format";
import { runAction } from "../toasts";

export function UploadSection({ upload }: { upload: UploadState | null }) {
  if (!upload) return null;
  const timeLeft = upload.secondsRemaining === null ? "" : ` · ${formatDuration(upload.secondsRemaining)} left`;
  const confirmCancel = (): void => {
    showModal(
      <ConfirmModal
        strTitle={`Cancel receiving ${upload.gameName}?`}
        strDescription="The files received so far are discarded. An installed version of the game stays as it is."
        strOKButtonText="Cancel upload"
        strCancelButtonText="Keep receiving"
        bDestructiveWarning
        onOK={() => runAction("cancel the upload", cancelUpload)}
      />,
    );
  };
  return (
    <PanelSection title="Receiving">
      <PanelSectionRow>
        <ProgressBarWithInfo
          focusable
          label={upload.gameName}
          nProgress={upload.percentage}
          sOperationText={upload.currentFile}
          sTimeRemaining={`${formatRate(upload.bytesPerSecond)}${timeLeft}`}
        />
      </PanelSectionRow>
      <PanelSectionRow>
        <ButtonItem layout="below" onClick={confirmCancel}>
          Cancel upload
        </ButtonItem>
      </PanelSectionRow>
    </PanelSection>
  );
}
