"""Contact sheet: a few images per finding, labelled, so a person can see the patterns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

THUMB = 160


PER_FINDING = 3  # example images per row of the preview sheet


def thumbnail(img: np.ndarray) -> Image.Image:
    return Image.fromarray(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)).resize((THUMB, THUMB), Image.BILINEAR)


def choose_preview(findings_per_exam: list[set[str]], names: list[str],
                   per_finding: int = PER_FINDING) -> dict[str, list[int]]:
    """Exam indices to show per finding; prefer exams where the finding is alone."""
    out: dict[str, list[int]] = {}
    for name in names:
        has = [i for i, f in enumerate(findings_per_exam) if (name in f if name != "normal" else not f)]
        has.sort(key=lambda i: (len(findings_per_exam[i]), i))
        out[name] = has[:per_finding]
    return out


def write_contact_sheet(path: Path, rows: dict[str, list[tuple[Image.Image, str]]]) -> Path:
    label_w, pad = 170, 4
    ncol = max((len(v) for v in rows.values()), default=1) or 1
    sheet = Image.new("L", (label_w + ncol * (THUMB + pad), len(rows) * (THUMB + pad) + pad), 32)
    draw = ImageDraw.Draw(sheet)
    for r, (name, items) in enumerate(rows.items()):
        y = pad + r * (THUMB + pad)
        draw.text((6, y + THUMB // 2 - 6), name, fill=255)
        for c, (thumb, caption) in enumerate(items):
            x = label_w + c * (THUMB + pad)
            sheet.paste(thumb, (x, y))
            draw.text((x + 3, y + 3), caption, fill=255)
    sheet.save(path)
    return path
