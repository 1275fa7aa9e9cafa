// Stand-ins for the @decky/ui components the panel uses: plain DOM with the same props, and
// class names the screenshot page styles like Steam's quick-access menu.
import type {
  ButtonItemProps,
  ConfirmModalProps,
  FieldProps,
  PanelSectionProps,
  PanelSectionRowProps,
  ProgressBarWithInfoProps,
  ShowModalResult,
  ToggleFieldProps,
} from "@decky/ui";
import { cloneElement, isValidElement, type ReactElement, type ReactNode } from "react";
import { createRoot } from "react-dom/client";

export const staticClasses = new Proxy({} as Record<string, string>, {
  get: (_, key) => `qam-${String(key)}`,
});

export function PanelSection({ title, children }: PanelSectionProps) {
  return (
    <section className="qam-section">
      {title && <h2 className="qam-section-title">{title}</h2>}
      {children}
    </section>
  );
}

export function PanelSectionRow({ children }: PanelSectionRowProps) {
  return <div className="qam-row">{children}</div>;
}

function FieldFrame(props: {
  label?: ReactNode;
  description?: ReactNode;
  children?: ReactNode;
  below?: boolean;
  focusable?: boolean;
  className?: string;
}) {
  return (
    <div
      className={`qam-field ${props.below ? "below" : "inline"} ${props.className ?? ""}`}
      tabIndex={props.focusable ? 0 : undefined}
      data-focusable={props.focusable ? "true" : undefined}
    >
      <div className="qam-field-main">
        {props.label !== undefined && <div className="qam-field-label">{props.label}</div>}
        {props.children !== undefined && <div className="qam-field-children">{props.children}</div>}
      </div>
      {props.description && <div className="qam-field-description">{props.description}</div>}
    </div>
  );
}

export function Field({ label, description, children, focusable, childrenLayout }: FieldProps) {
  return (
    <FieldFrame label={label} description={description} focusable={focusable} below={childrenLayout === "below"}>
      {children}
    </FieldFrame>
  );
}

export function ToggleField({ label, description, checked, disabled, onChange }: ToggleFieldProps) {
  return (
    <FieldFrame label={label} description={description} focusable>
      <input
        type="checkbox"
        role="switch"
        className="qam-toggle"
        aria-label={typeof label === "string" ? label : undefined}
        checked={checked}
        disabled={disabled}
        onChange={(event) => onChange?.(event.currentTarget.checked)}
      />
    </FieldFrame>
  );
}

export function ButtonItem({ label, description, children, layout, disabled, onClick }: ButtonItemProps) {
  return (
    <FieldFrame label={label} description={description} below={layout === "below"} className="qam-button-item">
      <button type="button" className="qam-button" disabled={disabled} onClick={(e) => onClick?.(e.nativeEvent)}>
        {children}
      </button>
    </FieldFrame>
  );
}

export function ProgressBarWithInfo(props: ProgressBarWithInfoProps) {
  const progress = props.nProgress ?? 0;
  return (
    <FieldFrame label={props.label} description={props.description} focusable={props.focusable} below>
      <div className="qam-progress-info">
        <span className="qam-progress-operation">{props.sOperationText}</span>
        <span className="qam-progress-time">{props.sTimeRemaining}</span>
      </div>
      <div
        role="progressbar"
        className="qam-progress-track"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={progress}
      >
        <div className="qam-progress-fill" style={{ width: `${progress}%` }} />
      </div>
    </FieldFrame>
  );
}

export function ConfirmModal(props: ConfirmModalProps) {
  const finish = (action?: () => void) => () => {
    action?.();
    props.closeModal?.();
  };
  return (
    <div role="dialog" className="qam-modal">
      <h3 className="qam-modal-title">{props.strTitle}</h3>
      <p className="qam-modal-description">{props.strDescription}</p>
      <div className="qam-modal-buttons">
        <button type="button" className="qam-button" onClick={finish(props.onCancel)}>
          {props.strCancelButtonText ?? "Cancel"}
        </button>
        <button
          type="button"
          className={`qam-button ${props.bDestructiveWarning ? "destructive" : "primary"}`}
          onClick={finish(props.onOK)}
        >
          {props.strOKButtonText ?? "Confirm"}
        </button>
      </div>
    </div>
  );
}

const openModals = new Set<() => void>();

/** Like Steam's showModal: renders the modal on top and hands it a `closeModal` prop. */
export function showModal(modal: ReactNode): ShowModalResult {
  const host = document.createElement("div");
  host.className = "qam-modal-backdrop";
  document.body.appendChild(host);
  const root = createRoot(host);
  const withClose = (node: ReactNode) =>
    isValidElement(node) ? cloneElement(node as ReactElement<{ closeModal?: () => void }>, { closeModal: close }) : node;
  function close(): void {
    if (!openModals.delete(close)) return;
    // Deferred: the close usually comes from a click inside this very root.
    queueMicrotask(() => {
      root.unmount();
      host.remove();
    });
  }
  openModals.add(close);
  root.render(withClose(modal));
  return { Close: close, Update: (next) => root.render(withClose(next)) };
}

export function closeAllModals(): void {
  for (const close of [...openModals]) close();
}
