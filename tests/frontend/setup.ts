import "@testing-library/jest-dom/vitest";

import { cleanup } from "@testing-library/react";
import { afterEach, vi } from "vitest";

import { resetDeckyApi } from "./mocks/decky-api";
import { closeAllModals } from "./mocks/decky-ui";

afterEach(() => {
  cleanup();
  closeAllModals();
  resetDeckyApi();
  vi.useRealTimers();
  vi.restoreAllMocks();
});
