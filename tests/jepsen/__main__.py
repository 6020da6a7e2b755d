"""``python -m tests.jepsen ...`` is ``python tests/jepsen/run.py ...``."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_ROOT))
sys.path.append(str(_ROOT / "tests"))

from jepsen.run import main  # noqa: E402

sys.exit(main())
