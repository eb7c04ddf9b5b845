"""A self-contained HTML evaluation report: numbers at a glance, plots as inline SVG, worst utterances.

One file with no scripts, fonts or images to fetch, so it can be mailed, attached to a run or opened
offline. Plots: CER by utterance duration, per-speaker WER/CER bars, error-type shares, the most
frequent character substitutions as a confusion table; then the worst utterances with reference and
hypothesis aligned and the errors highlighted. To see how it renders without a desktop (the slow test
in tests/test_evaluate.py does this)::

    chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$(mktemp -d)"
        --window-size=1100,3000 --screenshot=report.png "file://$PWD/runs/demo/eval/test/report.html"

(one command line).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import jiwer

from .report import decoding_line, error_phrase, percent

WIDTH = 640
BAR = 18  # bar height, px
COLORS = ("#3b6ea5", "#e0823d", "#5a9e6f", "#b9534f")
WORST_UTTERANCES = 25
MAX_SPEAKERS = 30

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1000px;color:#222;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}.card{background:#f4f6f9;border-radius:8px;padding:.6rem .9rem;
min-width:120px}.card b{display:block;font-size:1.35rem}.card span{font-size:.8rem;color:#555}
.meta{color:#555;font-size:.9rem}table{border-collapse:collapse;font-size:.9rem}td,th{padding:.25rem .5rem;
border:1px solid #e3e3e3;text-align:left;vertical-align:top}.num{text-align:right}
.sub{background:#ffe0b3}.del{background:#f8c4c4;text-decoration:line-through}.ins{background:#c9dcf5}
.utt td{font-family:ui-monospace,Menlo,Consolas,monospace}.legend span{padding:0 .4rem;margin-right:.5rem}
svg text{font-size:12px;fill:#333}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _svg(height: int, body: str) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img">{body}</svg>'


def bar_chart(rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], maximum: float = 1.0) -> str:
    """Horizontal bars, one group per row and one bar per series, values as percentages of ``maximum``."""
    label_width, value_width, label_chars = 220, 60, 32
    scale = (WIDTH - label_width - value_width) / (maximum or 1.0)
    group = BAR * len(series) + 8
    parts, y = [], 24
    for i, name in enumerate(series):
        parts.append(f'<rect x="{label_width + 110 * i}" y="4" width="10" height="10" fill="{COLORS[i]}"/>')
        parts.append(f'<text x="{label_width + 110 * i + 14}" y="13">{_esc(name)}</text>')
    for label, values in rows:
        short = label if len(label) <= label_chars else label[: label_chars - 1] + "…"
        parts.append(f'<text x="{label_width - 6}" y="{y + group / 2}" text-anchor="end">{_esc(short)}</text>')
        for i, value in enumerate(values):
            top = y + i * BAR
            width = max(0.0, min(value, maximum)) * scale
            parts.append(
                f'<rect x="{label_width}" y="{top}" width="{width:.1f}" height="{BAR - 3}" fill="{COLORS[i]}"/>'
            )
            parts.append(f'<text x="{label_width + width + 4:.1f}" y="{top + BAR - 6}">{100 * value:.1f}%</text>')
        y += group
    return _svg(y + 4, "".join(parts))


def duration_plot(durations: Sequence[float], cers: Sequence[float], bins: int = 8) -> str:
    """CER of every utterance against its duration (dots, capped at 100%) and the mean CER per duration bin."""
    left, right, top, bottom, height = 48, 16, 12, 36, 260
    lo, hi = min(durations), max(durations)
    span = (hi - lo) or 1.0

    def x(duration: float) -> float:
        return left + (duration - lo) / span * (WIDTH - left - right)

    def y(cer: float) -> float:
        return top + (1 - min(cer, 1.0)) * (height - top - bottom)

    parts = [
        f'<line x1="{left}" y1="{y(0)}" x2="{WIDTH - right}" y2="{y(0)}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0)}" stroke="#999"/>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{int(100 * tick)}%</text>')
    for k in range(5):
        d = lo + span * k / 4
        parts.append(f'<text x="{x(d):.1f}" y="{height - bottom + 16}" text-anchor="middle">{d:.1f}s</text>')
    parts.append(f'<text x="{WIDTH / 2}" y="{height - 4}" text-anchor="middle">utterance duration</text>')
    parts += [
        f'<circle cx="{x(d):.1f}" cy="{y(c):.1f}" r="2.5" fill="{COLORS[0]}" fill-opacity="0.45"/>'
        for d, c in zip(durations, cers)
    ]
    means = []
    for b in range(bins):
        start, end = lo + span * b / bins, lo + span * (b + 1) / bins
        inside = [c for d, c in zip(durations, cers) if start <= d < end or (b == bins - 1 and d == end)]
        if inside:
            means.append(f"{x((start + end) / 2):.1f},{y(sum(inside) / len(inside)):.1f}")
    if means:
        points = " ".join(means)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{COLORS[1]}" stroke-width="2.5"/>')
    return _svg(height, "".join(parts))


def confusion_table(confusions: Sequence[dict], size: int = 10) -> str:
    """Reference characters (rows) against what was written instead (columns), shaded by count."""
    if not confusions:
        return "<p>No character substitutions.</p>"
    refs = list(dict.fromkeys(c["reference"] for c in confusions))[:size]
    hyps = list(dict.fromkeys(c["hypothesis"] for c in confusions))[:size]
    counts = {(c["reference"], c["hypothesis"]): c["count"] for c in confusions}
    peak = max(counts.values())
    rows = ["<tr><th>ref \\ hyp</th>" + "".join(f"<th>{_esc(h)}</th>" for h in hyps) + "</tr>"]
    for r in refs:
        cells = []
        for h in hyps:
            n = counts.get((r, h), 0)
            shade = f' style="background:rgba(224,130,61,{0.15 + 0.85 * n / peak:.2f})"' if n else ""
            cells.append(f'<td class="num"{shade}>{n or ""}</td>')
        rows.append(f"<tr><th>{_esc(r)}</th>{''.join(cells)}</tr>")
    return f"<table>{''.join(rows)}</table>"


def aligned_html(reference: str, hypothesis: str) -> tuple[str, str]:
    """Reference and hypothesis as HTML, substituted / deleted / inserted syllables highlighted."""
    if not reference.strip():
        return "", f'<span class="ins">{_esc(hypothesis)}</span>' if hypothesis else ""
    words = jiwer.process_words(reference, hypothesis)
    ref, hyp = words.references[0], words.hypotheses[0]
    ref_out, hyp_out = [], []
    styles = {"substitute": ("sub", "sub"), "delete": ("del", None), "insert": (None, "ins"), "equal": (None, None)}
    for chunk in words.alignments[0]:
        ref_style, hyp_style = styles[chunk.type]
        for word in ref[chunk.ref_start_idx : chunk.ref_end_idx]:
            ref_out.append(f'<span class="{ref_style}">{_esc(word)}</span>' if ref_style else _esc(word))
        for word in hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]:
            hyp_out.append(f'<span class="{hyp_style}">{_esc(word)}</span>' if hyp_style else _esc(word))
    return " ".join(ref_out), " ".join(hyp_out)


def _cards(metrics: dict) -> str:
    cards = [
        ("WER (syllables)", percent(metrics["wer"])),
        ("CER", percent(metrics["cer"])),
        ("Accuracy", percent(metrics["accuracy"])),
        ("Sentence accuracy", percent(metrics["sentence_accuracy"])),
        ("Tone/diacritic errors", percent(metrics["tone_error_rate"])),
        ("Real-time factor", f"{metrics['rtf']:.4f}"),
        ("Samples", str(metrics["num_samples"])),
        ("Hours", f"{metrics['hours']:.2f}"),
    ]
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{v}</b><span>{k}</span></div>' for k, v in cards)
        + "</div>"
    )


def _worst(predictions: Sequence[dict]) -> str:
    worst = sorted(predictions, key=lambda p: (-p["wer"], -p["cer"]))[:WORST_UTTERANCES]
    rows = ["<tr><th>id</th><th>WER</th><th>CER</th><th>confidence</th><th>reference / hypothesis</th></tr>"]
    for p in worst:
        ref, hyp = aligned_html(p["reference"], p["hypothesis"])
        rows.append(
            f'<tr class="utt"><td>{_esc(p["id"])}</td><td class="num">{percent(p["wer"])}</td>'
            f'<td class="num">{percent(p["cer"])}</td><td class="num">{p["confidence"]:.2f}</td>'
            f"<td>{ref}<br>{hyp}</td></tr>"
        )
    legend = '<p class="legend"><span class="sub">substituted</span><span class="del">deleted</span>'
    legend += '<span class="ins">inserted</span></p>'
    return legend + f"<table>{''.join(rows)}</table>"


def render_html_report(metrics: dict, predictions: Sequence[dict]) -> str:
    """The report page for ``eval_results.json`` metrics and per-utterance rows (id, reference, hypothesis,
    cer, wer, duration, confidence)."""
    speakers = sorted((metrics.get("per_speaker") or {}).items(), key=lambda item: -item[1]["wer"])
    error_types = [
        ("Substitutions", [metrics["substitutions"]]),
        ("Deletions", [metrics["deletions"]]),
        ("Insertions", [metrics["insertions"]]),
        ("Tone/diacritic", [metrics["tone_error_share"]]),
    ]
    top_errors = "".join(
        f"<tr><td>{_esc(error_phrase(e))}</td><td class='num'>{e['count']}</td></tr>" for e in metrics["top_errors"]
    )
    sections = [
        f"<h1>Evaluation: {_esc(Path(str(metrics.get('model', ''))).parent.name or metrics.get('model', ''))}</h1>",
        f'<p class="meta">Model {_esc(metrics.get("model"))} · data {_esc(metrics.get("dataset"))} '
        f"[{_esc(metrics.get('split'))}] · decoding {_esc(decoding_line(metrics.get('decoding', {})))} · "
        f"{_esc(metrics.get('date', ''))}</p>",
        _cards(metrics),
        "<h2>Error types</h2><p>Shares of all syllable errors; tone/diacritic errors are the substitutions whose "
        "base letters are right (việt → viêt, đường → dương).</p>",
        bar_chart(error_types, ["share of errors"]),
    ]
    if predictions:
        sections += [
            "<h2>CER by utterance duration</h2><p>Each dot is an utterance (CER capped at 100%); the line is the "
            "mean CER per duration bin.</p>",
            duration_plot([p["duration"] for p in predictions], [p["cer"] for p in predictions]),
        ]
    if speakers:
        peak = max(max(s["wer"], s["cer"]) for _, s in speakers)
        shown = f"the {MAX_SPEAKERS} worst of {len(speakers)}, " if len(speakers) > MAX_SPEAKERS else ""
        sections += [
            f"<h2>Per speaker</h2><p>WER and CER per speaker ({shown}worst first).</p>",
            bar_chart(
                [(name, [s["wer"], s["cer"]]) for name, s in speakers[:MAX_SPEAKERS]], ["WER", "CER"], max(peak, 1e-9)
            ),
        ]
    sections += [
        "<h2>Most frequent character substitutions</h2>",
        confusion_table(metrics.get("char_confusions", [])),
        "<h2>Top errors</h2>",
        f"<table><tr><th>reference → hypothesis</th><th>count</th></tr>{top_errors}</table>",
        "<h2>Worst utterances</h2>",
        _worst(predictions),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="vi"><head><meta charset="utf-8">'
        f"<title>Evaluation report</title><style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def write_html_report(metrics: dict, predictions: Sequence[dict], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_html_report(metrics, predictions), encoding="utf-8")
    return path
