// Stand-in for @decky/api outside Steam: backend calls a test answers, events it fires, toasts it reads.
// Free of vitest so the screenshot page can bundle it too.
import type { ToastData, ToastNotification } from "@decky/api";

type Handler = (...args: never[]) => unknown;
type Listener = (...args: never[]) => unknown;

const handlers = new Map<string, Handler>();
const listeners = new Map<string, Set<Listener>>();
const calls: { route: string; args: unknown[] }[] = [];
export const toasts: ToastData[] = [];

export function call<Args extends unknown[] = [], Return = void>(route: string, ...args: Args): Promise<Return> {
  calls.push({ route, args });
  const handler = handlers.get(route);
  if (!handler) return Promise.reject(new Error(`no answer for backend call ${route}`));
  try {
    return Promise.resolve((handler as (...a: Args) => Return | Promise<Return>)(...args));
  } catch (error) {
    return Promise.reject(error);
  }
}

export function callable<Args extends unknown[] = [], Return = void>(route: string) {
  return (...args: Args): Promise<Return> => call<Args, Return>(route, ...args);
}

export function addEventListener<Args extends unknown[] = []>(
  event: string,
  listener: (...args: Args) => unknown,
): (...args: Args) => unknown {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event)!.add(listener as Listener);
  return listener;
}

export function removeEventListener<Args extends unknown[] = []>(
  event: string,
  listener: (...args: Args) => unknown,
): void {
  listeners.get(event)?.delete(listener as Listener);
}

export const toaster = {
  toast(data: ToastData): ToastNotification {
    toasts.push(data);
    return { data, dismiss: () => undefined };
  },
};

export function definePlugin<T>(fn: () => T): () => T {
  return fn;
}

// ---- test controls ----

/** Sets how the backend answers `route`: a value, a promise, or a throw. */
export function answer(route: string, handler: (...args: never[]) => unknown): void {
  handlers.set(route, handler);
}

/** Fires a backend event at every listener, as `decky.emit` would. */
export function emit(event: string, ...args: unknown[]): void {
  for (const listener of [...(listeners.get(event) ?? [])]) (listener as (...a: unknown[]) => unknown)(...args);
}

export function listenerCount(event: string): number {
  return listeners.get(event)?.size ?? 0;
}

/** The argument lists of every call to `route`, oldest first. */
export function callsTo(route: string): unknown[][] {
  return calls.filter((c) => c.route === route).map((c) => c.args);
}

/** A promise the test settles when it chooses. */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export function resetDeckyApi(): void {
  handlers.clear();
  listeners.clear();
  calls.length = 0;
  toasts.length = 0;
}
