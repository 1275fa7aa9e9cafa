// The screenshot page: the real panel, fed one fixture state, inside a quick-access-menu frame.
import { createRoot } from "react-dom/client";

import { Panel } from "../../../src/components/Panel";
import * as fixtures from "../fixtures";
import { answer } from "../mocks/decky-api";

const states = {
  idle: fixtures.idle,
  pairing: fixtures.pairing,
  uploading: fixtures.uploading,
  blocked: fixtures.blocked,
};

const name = location.hash.slice(1) as keyof typeof states;
answer("get_state", () => states[name]);

createRoot(document.getElementById("root")!).render(
  <div className="screen">
    <div className="qam">
      <nav className="qam-rail" aria-hidden>
        {["", "", "", "", "selected", ""].map((state, i) => (
          <span key={i} className={`qam-rail-tab ${state}`} />
        ))}
      </nav>
      <main className="qam-body">
        <header className="qam-header">
          <span className="qam-back" aria-hidden>
            ‹
          </span>
          <div className="qam-Title">CapyDeploy</div>
        </header>
        <div className="qam-content">
          <Panel />
        </div>
      </main>
    </div>
  </div>,
);
