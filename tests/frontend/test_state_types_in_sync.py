"""src/generated/state.ts must match the Python state models it is generated from."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_state_types.py"


def run_check(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def test_generated_state_types_match_python_models() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr


def test_check_mode_fails_when_the_file_differs(tmp_path: Path) -> None:
    stale = tmp_path / "state.ts"
    stale.write_text("// stale\n", encoding="utf-8")
    result = run_check("--output", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr
    assert stale.read_text(encoding="utf-8") == "// stale\n"
