#!/usr/bin/env python3
"""Writes the C++ code blocks of README.md's "Use" section as a file of { ... } blocks, one per
snippet, for test/test_readme.cpp to compile and run: the documentation examples are tests, so
they cannot rot. #include lines are dropped (the test includes what they name)."""
import re
import sys


def main(readme_path: str, output_path: str) -> None:
    text = open(readme_path, encoding="utf-8").read()
    section = text.split("## Use", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```cpp\n(.*?)```", section, flags=re.S)
    if not blocks:
        sys.exit("readme_snippets.py: no ```cpp blocks in README.md's Use section")
    with open(output_path, "w", encoding="utf-8") as out:
        out.write("// Generated from README.md by tools/readme_snippets.py. Do not edit.\n")
        for block in blocks:
            lines = [line for line in block.splitlines() if not line.startswith("#include")]
            out.write("{\n" + "\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
