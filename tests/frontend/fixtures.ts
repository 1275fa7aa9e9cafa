// Agent snapshots for the panel's states, shared by the tests and the screenshot page.
import type { AgentSnapshot } from "../../src/backend";

const DAY = 86_400;
const NOW = 1_767_200_000; // a fixed Unix time, so dates in pictures never change

export const idle: AgentSnapshot = {
  agentId: "agent-7f3c",
  name: "Steam Deck",
  version: "0.1.0",
  platform: "steamdeck",
  running: true,
  host: "0.0.0.0",
  port: 9999,
  addresses: ["192.168.1.42"],
  acceptConnections: true,
  installDir: "/home/deck/Games",
  pairing: null,
  lockoutRemaining: 0,
  connectedHub: null,
  authorizedHubs: [
    { id: "hub-desk", name: "Desk PC", platform: "windows", pairedAt: NOW - 30 * DAY, lastSeen: NOW - DAY },
  ],
  upload: null,
  recentInstalls: [
    { gameName: "Celeste", path: "/home/deck/Games/Celeste", installedAt: NOW - 2 * DAY, appId: 3672303389 },
  ],
  error: null,
};

export const pairing: AgentSnapshot = {
  ...idle,
  pairing: { code: "482913", hubName: "Living-room PC", expiresAt: NOW + 60, expiresIn: 60 },
  connectedHub: {
    id: "hub-living",
    name: "Living-room PC",
    platform: "linux",
    address: "192.168.1.20",
    authenticated: false,
    connectedAt: NOW,
  },
};

export const lockout: AgentSnapshot = { ...idle, lockoutRemaining: 287 };

export const connected: AgentSnapshot = {
  ...idle,
  connectedHub: {
    id: "hub-desk",
    name: "Desk PC",
    platform: "windows",
    address: "192.168.1.10",
    authenticated: true,
    connectedAt: NOW,
  },
};

export const uploading: AgentSnapshot = {
  ...connected,
  upload: {
    uploadId: "up-1",
    gameName: "Hollow Knight",
    currentFile: "Hollow Knight_Data/resources.assets",
    transferredBytes: 3_150_000_000,
    totalBytes: 7_500_000_000,
    percentage: 42,
    bytesPerSecond: 12_500_000,
    secondsRemaining: 83,
  },
};

export const blocked: AgentSnapshot = { ...idle, acceptConnections: false };

export const withHubs: AgentSnapshot = {
  ...idle,
  authorizedHubs: [
    ...idle.authorizedHubs,
    { id: "hub-laptop", name: "Laptop", platform: "linux", pairedAt: NOW - 3 * DAY, lastSeen: NOW - 3 * DAY },
  ],
};
