// Decky's entry: the panel, and the listeners that must work while the menu is closed.
import { definePlugin } from "@decky/api";
import { staticClasses } from "@decky/ui";
import { FaDownload } from "react-icons/fa";

import { Panel } from "./components/Panel";
import { startSteamRequestListener } from "./steamRequests";
import { startInstallToasts } from "./toasts";

export default definePlugin(() => {
  // Registered here, not in the panel: the panel mounts only while the menu shows it.
  const stopSteamRequests = startSteamRequestListener();
  const stopInstallToasts = startInstallToasts();
  return {
    name: "CapyDeploy",
    titleView: <div className={staticClasses.Title}>CapyDeploy</div>,
    content: <Panel />,
    icon: <FaDownload />,
    onDismount() {
      stopSteamRequests();
      stopInstallToasts();
    },
  };
});
