"""``python -m envfoundry.declarative``: write the format's JSON Schema files (``schema/*.schema.json``)
from the pydantic models; run it after changing :mod:`.models` (a test checks they agree)."""

from __future__ import annotations

import json

from . import SCHEMA_DIR, json_schemas


def write() -> list[str]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    out = []
    for name, schema in json_schemas().items():
        path = SCHEMA_DIR / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        out.append(str(path))
    return out


if __name__ == "__main__":
    for p in write():
        print(p)
