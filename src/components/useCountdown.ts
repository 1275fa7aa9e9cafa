import { useEffect, useState } from "react";

/** Seconds left of `seconds` counted from `since` (a Date.now()), ticking while above zero. */
export function useCountdown(seconds: number, since: number): number {
  const [now, setNow] = useState(Date.now);
  const left = Math.min(seconds, Math.max(0, seconds - (now - since) / 1000));
  const running = left > 0;
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [running]);
  return left;
}
