"""Engine messages in the words of the Slicer module.

The engine's :class:`~oneshotsam.errors.OneShotError` messages are
written for its command line (``--backend NAME``, ``oneshotsam weights
download NAME``). A clinician in Slicer has no command line: the Logic passes
every engine message through :func:`for_slicer`, which names the module's
controls instead. Plain Python.
"""

from __future__ import annotations

import re

#: (pattern, replacement) applied in order; the last rule catches any other option
_RULES: tuple[tuple[str, str], ...] = (
    (r"\s*\(?`oneshotsam weights list`[^)]*\)?,?", ""),
    (r"\s*\(e\.g\. --backend \S+ --checkpoint \S+\)", ""),
    (r"[Dd]ownload (the )?official weights with `?oneshotsam weights download ([\w.+-]+)`?",
     r"press 'Download official weights...' for the model \2"),
    (r"`?oneshotsam weights download ([\w.+-]+|NAME)`?",
     r"'Download official weights...' for the model \1"),
    (r"\s*\(cache: [^;)]*; set ONESHOTSAM_CACHE to change it\)", ""),
    (r"(use )?--method medpersam-warp", "choose the method 'Med-PerSAM (warp only)'"),
    (r"pass --backend NAME --checkpoint PATH", "choose a model and its weights"),
    (r"(use )?--backend ([\w.+-]+)", r"choose the model \2"),
    (r"(pass )?--checkpoint PATH", "choose a weights file ('Weights file')"),
    (r"--checkpoint", "'Weights file'"),
    (r"(disable )?--no-align", "turn alignment off"),
    (r"--preset ([\w.+-]+)", r"the preset \1"),
    (r"--device (\w+)", r"device '\1'"),
    (r"--window", "'Intensity window'"),
    (r"--axis", "'Slicing axis'"),
    (r"--reference-slices?( K)?", "'Annotated slices'"),
    (r"--set KEY=VALUE|--set", "method settings"),
    (r"--sha256( HEX)?", "the file's SHA-256"),
    (r"--([a-z][a-z0-9-]*)", lambda m: "'" + m.group(1).replace("-", " ") + "'"),  # type: ignore[arg-type]
)


def for_slicer(message: str) -> str:
    """``message`` with command-line options replaced by the module's controls."""
    text = str(message)
    for pattern, repl in _RULES:
        text = re.sub(pattern, repl, text)
    text = re.sub(r"\s{2,}", " ", text).replace(" .", ".").strip()
    # a new sentence starts upper case (not after an abbreviation such as "e.g.")
    return re.sub(r"(?<!e\.g)(?<!i\.e)(\.\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
