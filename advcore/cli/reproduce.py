"""``reproduce``: each paper's headline claims next to advlab's measurement, with a verdict (advcore.labs.papers)."""

from __future__ import annotations

import argparse

from advcore.cli import framework as fw


def _args(p: argparse.ArgumentParser) -> None:
    # No choices= here: the paper keys live in advcore.labs.papers, which imports the labs (and torch); building
    # the parser must stay light, so the name is checked in the command (an unknown one lists the keys, exit 2).
    p.add_argument("paper", nargs="?", metavar="PAPER",
                   help="the paper to reproduce: a key of advcore.labs.papers.PAPERS (mat, halftone, ...)")
    p.add_argument("--quick", action="store_true", help="small settings (a few minutes on 2 CPU cores); not saved")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.add_argument("--readme", action="store_true",
                   help="rewrite README.md's generated 'What the measurements say' section (claims table, settings, "
                        "findings) from the saved results")


@fw.command("reproduce", "a paper's headline claims, advlab's measurement and a verdict per claim", _args)
def cmd_reproduce(args: argparse.Namespace) -> int:
    """Measure a paper (a full run saves bench/results/papers/PAPER.json) or regenerate the README section."""
    from advcore.labs import papers
    from advcore.paths import ROOT

    if args.readme:
        path = ROOT / "README.md"
        path.write_text(papers.replace_readme(path.read_text(), papers.readme_section(papers.load_saved())))
        print(f"wrote {path}")
        return fw.EXIT_OK
    if args.paper is None:
        raise fw.AdvlabError("give a PAPER (" + ", ".join(papers.PAPERS) + ") or --readme")
    papers.check_paper(args.paper)
    def progress(p) -> None:
        if not args.json:
            print(f"{p.stage}: {p.step}/{p.total}", flush=True)

    rec = papers.reproduce(args.paper, quick=args.quick, progress=progress)
    if not args.quick and rec["measurement"] is not None:
        papers.save(rec)
    if args.json:
        print(fw.json_text(rec))
        return fw.EXIT_OK
    for c in rec["claims"]:
        print(f"[{c['verdict']}] {c['statement']} ({c['where']}): {c['why']}")
    if rec["setting"]:
        print(f"setting: {rec['setting']}")
    return fw.EXIT_OK
