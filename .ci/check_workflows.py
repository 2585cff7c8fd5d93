"""Offline checks of .github/workflows/*.yml that GitHub would only report on a real run.

1. No job runs on a retired (or retiring) GitHub-hosted runner label: such a job waits for
   a runner that never comes, and every job that `needs:` it never starts.
2. Every `uses:` is pinned by a full 40-hex commit SHA with its version in a comment
   (`owner/repo@<sha> # vX.Y.Z`), and that (action, version, SHA) is one we verified
   against the action's own repository (docs/RELEASING.md says how); a new pin must be
   verified and added to VERIFIED_PINS, so a typo or a moved tag cannot slip in.

    python .ci/check_workflows.py [workflow files...]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# label -> why it is refused, with its source: the actions/runner-images repository
# (README.md "Available Images" table and the commit that took the label out of it, as
# "README <commit> (#PR)"; announcement issues as "issue #N"). Checked against its history
# of 2026-08-21; macOS 14 was retired after that snapshot, on the date its announcement set.
RETIRED_LABELS = {
    "ubuntu-18.04": "retired 2023; gone from README e72606f (#7388)",
    "ubuntu-20.04": "retired 2025-04-15; README 80a1ca9 (#11748), files removed 2068502 (#13533)",
    "macos-10.15": "retired 2022; gone from README 6a893d2 (#7481)",
    "macos-11": "retired 2024-06-28; gone from README 315fbf0 (#10198)",
    "macos-12": "retired 2024-12-03; gone from README 620ebdf (#11473)",
    "macos-12-large": "retired 2024-12-03; gone from README 620ebdf (#11473)",
    "macos-13": "retired 2025-12-04 (issue #13046); gone from README e664a5c (#13439)",
    "macos-13-large": "retired 2025-12-04 (issue #13046); gone from README e664a5c (#13439)",
    "macos-13-xlarge": "retired 2025-12-04 (issue #13046); gone from README e664a5c (#13439)",
    "macos-14": "retired 2026-11-02 (issue #13518; deprecated in README 83c5398, #14329)",
    "macos-14-large": "retired 2026-11-02 (issue #13518; deprecated in README 83c5398, #14329)",
    "macos-14-xlarge": "retired 2026-11-02 (issue #13518; deprecated in README 83c5398, #14329)",
    "windows-2016": "retired 2022; removed from the repository 8c24b03 (#5994)",
    "windows-2019": "retired 2025-06-30; removed from README 2068502 (#13533)",
}

# (action, version) -> commit SHA, each checked against the action's repository
# (tag -> commit), see docs/RELEASING.md "Pinned actions".
VERIFIED_PINS = {
    ("actions/checkout", "v7.0.1"): "3d3c42e5aac5ba805825da76410c181273ba90b1",
    ("actions/setup-python", "v7.0.0"): "5fda3b95a4ea91299a34e894583c3862153e4b97",
    ("actions/upload-artifact", "v7.0.0"): "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
    ("actions/download-artifact", "v8.0.1"): "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c",
    ("pypa/gh-action-pypi-publish", "v1.14.2"): "dc37677b2e1c63e2034f94d8a5b11f265b73ba33",
}

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PIN = re.compile(r"^([\w.-]+/[\w./-]+)@([0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^\s*#\s*(v\d+(?:\.\d+){0,2})\s*$")


def check_file(path: Path) -> list[str]:
    errors = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path.name}:{n}"
        m = USES.match(line)
        if m:
            ref, rest = m.group(1), m.group(2)
            if ref.startswith("./") or ref.startswith("docker://"):
                errors.append(f"{where}: {ref}: local and docker actions are not allowed here")
                continue
            pin, ver = PIN.match(ref), VERSION_COMMENT.match(rest)
            if not pin:
                errors.append(f"{where}: {ref} is not pinned by a full 40-hex commit SHA")
            elif not ver:
                errors.append(f"{where}: {ref} has no '# vX.Y.Z' version comment")
            else:
                key = (pin.group(1), ver.group(1))
                want = VERIFIED_PINS.get(key)
                if want is None:
                    errors.append(f"{where}: {key[0]} {key[1]} is not in VERIFIED_PINS: verify "
                                  "its tag -> commit in the action's repository, then add it")
                elif want != pin.group(2):
                    errors.append(f"{where}: {key[0]} {key[1]} is {want}, not {pin.group(2)}")
        # every word outside comments, not only after runs-on: / os: on the same line (a
        # matrix list on the lines below, an include's runner:, an if: on matrix.os)
        code = line.split("#", 1)[0]
        for label in re.findall(r"[\w.-]+", code):
            if label in RETIRED_LABELS:
                errors.append(f"{where}: runner label {label}: {RETIRED_LABELS[label]}")
    return errors


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    errors, uses = [], 0
    for f in files:
        errors += check_file(f)
        uses += sum(bool(USES.match(x)) for x in f.read_text().splitlines())
    for e in errors:
        print("ERROR:", e, file=sys.stderr)
    print(f"{len(files)} workflow files, {uses} uses: pinned and verified; "
          f"no retired runner label ({len(RETIRED_LABELS)} known)" if not errors else
          f"{len(errors)} problem(s) in the workflows")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
