#!/usr/bin/env bash
# Checks that every relative link in the project's Markdown files resolves: the file or
# directory exists, and a `#fragment` names a heading of the target file (GitHub's anchors:
# lower case, punctuation dropped, spaces to hyphens). Links with a scheme (https:, mailto:)
# are not followed. Code blocks and `code spans` are skipped. Called by scripts/test-all.sh;
# prints every broken link and exits 1 if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

# The Markdown files: tracked and new ones, or every one outside target/ without git.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.md' | sort -u)
else
  mapfile -t files < <(find . -name '*.md' -not -path './target/*' -not -path './.git/*' | sed 's|^\./||' | sort)
fi
[ "${#files[@]}" -gt 0 ] || { echo "check-links: no Markdown files found" >&2; exit 1; }

# Prints "LINE<TAB>TARGET" for every link of a Markdown file, outside code.
links() {
  awk '
    /^[ \t]*(```|~~~)/ { fence = !fence; next }
    fence { next }
    {
      line = $0
      gsub(/`[^`]*`/, "", line)
      if (match(line, /^[ \t]*\[[^]]+\]:[ \t]+[^ \t]+/)) {
        def = substr(line, RSTART, RLENGTH); sub(/^[ \t]*\[[^]]+\]:[ \t]+/, "", def)
        print NR "\t" def
      }
      while (match(line, /\]\([^)]*\)/)) {
        target = substr(line, RSTART + 2, RLENGTH - 3)
        line = substr(line, RSTART + RLENGTH)
        sub(/^[ \t]*</, "", target); sub(/>[ \t]*$/, "", target)
        sub(/[ \t].*$/, "", target)          # a "title" after the target
        print NR "\t" target
      }
    }' "$1"
}

# Prints the anchor of every heading of a Markdown file, outside code.
anchors() {
  awk '
    /^[ \t]*(```|~~~)/ { fence = !fence; next }
    fence { next }
    /^#{1,6}[ \t]/ {
      h = $0
      sub(/^#+[ \t]+/, "", h); sub(/[ \t]+#*[ \t]*$/, "", h)
      h = tolower(h)
      gsub(/[^a-z0-9 _-]/, "", h)
      gsub(/ /, "-", h)
      print h
    }' "$1"
}

broken=0
bad() { printf '%s:%s: broken link %s: %s\n' "$1" "$2" "$3" "$4" >&2; broken=1; }
for f in "${files[@]}"; do
  dir=$(dirname "$f")
  while IFS=$'\t' read -r line target; do
    [ -n "$target" ] || { bad "$f" "$line" "()" "empty target"; continue; }
    case $target in
      [a-zA-Z]*:*) continue ;; # https:, mailto:, file: …
    esac
    path=${target%%#*}
    fragment=
    [ "$path" = "$target" ] || fragment=${target#*#}
    if [ -z "$path" ]; then
      resolved=$f
    else
      resolved=$dir/$path
      [ -e "$resolved" ] || { bad "$f" "$line" "$target" "$resolved does not exist"; continue; }
    fi
    if [ -n "$fragment" ]; then
      case $resolved in
        *.md) anchors "$resolved" | grep -qxF -- "$fragment" ||
          bad "$f" "$line" "$target" "no heading with anchor #$fragment in $resolved" ;;
        *) bad "$f" "$line" "$target" "a #fragment into a file that is not Markdown" ;;
      esac
    fi
  done < <(links "$f")
done
if [ "$broken" = 1 ]; then
  exit 1
fi
echo "check-links: every relative link in ${#files[@]} Markdown files resolves"
