// The last games received, so the user can check what arrived without opening the library.
import { Field, PanelSection, PanelSectionRow } from "@decky/ui";

import type { InstalledGame } from "../backend";
import { formatDate } from "../format";

export function RecentInstallsSection({ games }: { games: InstalledGame[] }) {
  if (games.length === 0) return null;
  return (
    <PanelSection title="Recently installed">
      {games.map((game) => (
        <PanelSectionRow key={`${game.path}@${game.installedAt}`}>
          <Field focusable label={game.gameName} description={game.path}>
            {game.appId === null ? formatDate(game.installedAt) : "In library"}
          </Field>
        </PanelSectionRow>
      ))}
    </PanelSection>
  );
}
