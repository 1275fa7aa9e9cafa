// The Decky preset: src/index.tsx → dist/index.js, with React and @decky/ui taken from Steam.
import deckyPlugin from "@decky/rollup";

export default deckyPlugin();
