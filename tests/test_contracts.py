"""docs/CONTRACTS.md is generated from the code; this fails when someone forgets to regenerate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_contracts_doc_matches_the_code():
    proc = subprocess.run(
        [sys.executable, "-m", "qa.contracts", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr + "\nrun: python -m qa.contracts"


def test_the_check_notices_a_stale_doc(tmp_path, monkeypatch):
    from qa import contracts

    stale = tmp_path / "CONTRACTS.md"
    stale.write_text(contracts.render().replace("def ask", "def asked"), encoding="utf-8")
    monkeypatch.setattr(contracts, "DOC", stale)
    assert contracts.main(["--check"]) == 1
    assert contracts.main([]) == 0 and contracts.main(["--check"]) == 0
