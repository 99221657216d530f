"""What every text emitter shares: the YAML dumper and where the text goes (-o FILE or stdout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def dump(document: dict[str, Any]) -> str:
    """YAML in the order the document was built (stable output), no line folding."""
    import yaml  # here, not at the top: a fully cached build renders nothing

    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)


def write_output(text: str, output_file: Path | None) -> None:
    """Print text, or write it to output_file (its folder made); `-o -` is stdout too."""
    if output_file is None or str(output_file) == "-":
        click.echo(text, nl=False)
        return
    output_file.parent.mkdir(parents=True, exist_ok=True)
    output_file.write_text(text)
