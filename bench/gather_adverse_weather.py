"""Re-gather the adverse-condition photo set from fetched public repositories.

Usage::

    .venv/bin/python bench/gather_adverse_weather.py --mirrors /work/.mirror \
        [--manifest bench/data/adverse_weather/MANIFEST.csv] [--out /work/data/adverse/real]
        [--repo owner/name=/path/to/git-dir ...] [--only-missing]

Every row of the manifest names a ``source_repo`` (``owner/name``), a ``commit`` and a
``path``. For each repository the script looks for a git directory (bare, or a work tree
with ``.git``) under ``--mirrors`` in the layouts the search tool's ``fetch`` produces and
a plain clone would have::

    MIRRORS/owner+name/repo(.git)   MIRRORS/owner+name   MIRRORS/owner/name(.git)

(``--repo owner/name=DIR`` overrides one), reads the blob with ``git show COMMIT:PATH``
(falling back to the snapshot's ``HEAD`` when that commit is absent, with a warning),
checks its sha256 against the manifest and writes it to ``OUT/<file>``. It then writes
``OUT/../manifest.csv`` (a copy of the manifest rows that were gathered). Exit status 1 if
any file is missing or has the wrong sha256; the summary names the repositories that
still need fetching.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def find_git_dir(mirrors: Path, repo: str, overrides: dict[str, Path]) -> Path | None:
    if repo in overrides:
        return overrides[repo]
    owner, name = repo.split("/", 1)
    flat = mirrors / f"{owner}+{name}"
    for cand in (
        flat / "repo" / ".git",
        flat / "repo",
        flat / ".git",
        flat,
        mirrors / owner / name / ".git",
        mirrors / owner / name,
    ):
        if cand.is_dir() and (cand / "HEAD").exists() and (cand / "objects").is_dir():
            return cand
    return None


def git_blob(git_dir: Path, commit: str, path: str) -> tuple[bytes | None, str]:
    for rev in (commit, "HEAD"):
        res = subprocess.run(
            ["git", "--git-dir", str(git_dir), "show", f"{rev}:{path}"], capture_output=True
        )
        if res.returncode == 0:
            return res.stdout, rev
    return None, ""


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    ap.add_argument(
        "--manifest", type=Path, default=HERE / "data" / "adverse_weather" / "MANIFEST.csv"
    )
    ap.add_argument("--out", type=Path, default=Path("/work/data/adverse/real"))
    ap.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=GITDIR")
    ap.add_argument(
        "--only-missing",
        action="store_true",
        help="skip files already present with the right sha256",
    )
    args = ap.parse_args(argv[1:])
    overrides = {k: Path(v) for k, v in (r.split("=", 1) for r in args.repo)}

    with open(args.manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    args.out.mkdir(parents=True, exist_ok=True)
    gathered, missing_repos, bad = [], Counter(), []
    git_dirs: dict[str, Path | None] = {}
    for row in rows:
        target = args.out / row["file"]
        if args.only_missing and target.exists():
            if hashlib.sha256(target.read_bytes()).hexdigest() == row["sha256"]:
                gathered.append(row)
                continue
        repo = row["source_repo"]
        if repo not in git_dirs:
            git_dirs[repo] = find_git_dir(args.mirrors, repo, overrides)
        git_dir = git_dirs[repo]
        if git_dir is None:
            missing_repos[repo] += 1
            continue
        data, rev = git_blob(git_dir, row["commit"], row["path"])
        if data is None:
            bad.append(
                f"{row['file']}: {row['path']} not in {repo} at {row['commit'][:10]} nor HEAD"
            )
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha != row["sha256"]:
            bad.append(
                f"{row['file']}: sha256 {sha[:12]} != manifest {row['sha256'][:12]} (read at {rev[:10]})"
            )
            continue
        if rev != row["commit"]:
            print(
                f"warning: {row['file']} read at HEAD of {repo}; commit {row['commit'][:10]} absent (sha256 matches)"
            )
        target.write_bytes(data)
        gathered.append(row)

    with open(args.out.parent / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(gathered)
    print(f"gathered {len(gathered)}/{len(rows)} files into {args.out}")
    for repo, n in missing_repos.most_common():
        commit = next(r["commit"] for r in rows if r["source_repo"] == repo)
        print(f"  not fetched: {repo} ({n} files) - fetch github:{repo} (manifest commit {commit})")
    for line in bad:
        print("  FAILED", line)
    return 0 if len(gathered) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
