//! Fuzz-style property tests on stable Rust: proptest strategies that turn a valid document
//! into a near-valid one (truncated, bytes flipped, ranges dropped or doubled, hostile tokens
//! spliced in: huge numbers, deep nesting, NUL, odd Unicode, invalid UTF-8, overlong strings),
//! a case count that stays small in CI and grows with `PROPTEST_CASES`, and the check that an
//! error message stays short whatever the input.

use proptest::prelude::*;
use proptest::test_runner::Config;

mod yaml;

pub use yaml::{hostile_yaml_leaves, YAML_TOKENS};

/// Longest error message (in characters) a parser may give for hostile input: enough to name
/// the field and quote a little, never the input itself.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Pieces of hostile input spliced into documents, whatever their format.
pub const HOSTILE_TOKENS: &[&[u8]] = &[
    b"\0",
    b"\\u0000",
    b"\xff",
    b"\xc0\x80",           // overlong encoding of NUL
    b"\xed\xa0\x80",       // a UTF-16 surrogate encoded as UTF-8
    b"\\ud800",            // a lone surrogate as a JSON escape
    "\u{202e}".as_bytes(), // right-to-left override
    "\u{200b}".as_bytes(), // zero-width space
    "\u{feff}".as_bytes(), // byte-order mark
    "\u{10ffff}".as_bytes(),
    "e\u{301}".as_bytes(), // combining accent
    "\u{1f600}".as_bytes(),
    b"\r\n",
    b"\t",
    b"\x1b[31m",
    b"99999999999999999999999999999999",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1e999",
    b"-0",
    b"NaN",
    b"\"",
    b"\\",
    b"'",
    b":",
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"true",
];

/// The case count for a fuzz test: `default` (small, for CI) unless `PROPTEST_CASES` is set,
/// in which case that many (`PROPTEST_CASES=100000` for a long run by hand). Failures are not
/// written to `proptest-regressions` files: each one found becomes a named test instead.
pub fn config(default: u32) -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

/// A position in a document, as a fraction of its length (so it shrinks towards the start
/// and stays valid whatever the length).
#[derive(Debug, Clone, Copy)]
pub struct Pos(pub u32);

impl Pos {
    /// The position in a sequence of `len` items: `0..len` (0 when empty).
    fn index(self, len: usize) -> usize {
        ((u64::from(self.0) * len as u64) >> 32) as usize
    }
}

/// One change to a document.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Keep only the bytes before this position.
    Truncate(Pos),
    /// XOR the byte at a position with a non-zero mask.
    Flip(Pos, u8),
    /// Set the byte at a position.
    Set(Pos, u8),
    /// Drop up to `len` bytes from a position.
    Delete(Pos, usize),
    /// Insert a copy of up to `len` bytes from one position at another.
    Duplicate(Pos, usize, Pos),
    /// Insert a token at a position.
    Insert(Pos, Vec<u8>),
    /// Insert a token repeated `count` times at a position (deep nesting, overlong strings).
    Repeat(Pos, Vec<u8>, usize),
}

impl Mutation {
    /// Applies the change to `doc` (an empty document only grows).
    pub fn apply(&self, doc: &mut Vec<u8>) {
        let at = |i: &Pos, len: usize| i.index(len + 1);
        let len = doc.len();
        match self {
            Mutation::Truncate(i) => doc.truncate(at(i, len)),
            Mutation::Flip(i, mask) if len > 0 => doc[i.index(len)] ^= mask.max(&1),
            Mutation::Set(i, byte) if len > 0 => doc[i.index(len)] = *byte,
            Mutation::Delete(i, n) => {
                let start = at(i, len);
                doc.drain(start..(start + n).min(len));
            }
            Mutation::Duplicate(from, n, to) => {
                let start = at(from, len);
                let piece = doc[start..(start + n).min(len)].to_vec();
                let to = at(to, len);
                doc.splice(to..to, piece);
            }
            Mutation::Insert(i, token) => {
                let at = at(i, len);
                doc.splice(at..at, token.iter().copied());
            }
            Mutation::Repeat(i, token, count) => {
                let at = at(i, len);
                doc.splice(at..at, token.repeat(*count));
            }
            Mutation::Flip(..) | Mutation::Set(..) => {}
        }
    }
}

/// A token: one of [`HOSTILE_TOKENS`], one of `extra` (the format's own syntax), or a short
/// run of random bytes.
fn token(extra: &'static [&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    let hostile = proptest::sample::select(HOSTILE_TOKENS).prop_map(<[u8]>::to_vec);
    let random = proptest::collection::vec(any::<u8>(), 1..8);
    if extra.is_empty() {
        prop_oneof![3 => hostile, 1 => random].boxed()
    } else {
        let own = proptest::sample::select(extra).prop_map(<[u8]>::to_vec);
        prop_oneof![3 => hostile, 3 => own, 1 => random].boxed()
    }
}

/// Any one [`Mutation`], its tokens drawn from [`HOSTILE_TOKENS`] and `extra`.
pub fn mutation(extra: &'static [&'static [u8]]) -> impl Strategy<Value = Mutation> {
    let index = || any::<u32>().prop_map(Pos);
    prop_oneof![
        2 => index().prop_map(Mutation::Truncate),
        3 => (index(), any::<u8>()).prop_map(|(i, m)| Mutation::Flip(i, m)),
        2 => (index(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (index(), 1..64usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (index(), 1..256usize, index()).prop_map(|(f, n, t)| Mutation::Duplicate(f, n, t)),
        4 => (index(), token(extra)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => (index(), token(extra), prop_oneof![1..300usize, Just(4_097)])
            .prop_map(|(i, t, n)| Mutation::Repeat(i, t, n)),
    ]
}

/// `valid` changed by one to four mutations: a near-valid document, mostly refused, sometimes
/// still accepted.
pub fn mutated(
    valid: impl Strategy<Value = Vec<u8>>,
    extra: &'static [&'static [u8]],
) -> impl Strategy<Value = Vec<u8>> {
    (valid, proptest::collection::vec(mutation(extra), 1..5)).prop_map(|(mut doc, mutations)| {
        for m in &mutations {
            m.apply(&mut doc);
        }
        doc
    })
}

/// Text made of one odd piece repeated (none, a few, or far too many times): control and
/// format characters, combining marks, astral characters, quotes, escapes and line breaks.
pub fn hostile_text() -> impl Strategy<Value = String> {
    let piece = proptest::sample::select(vec![
        "x",
        "é",
        "\0",
        "\u{1b}[31m",
        "\u{202e}",
        "\u{200b}",
        "\u{feff}",
        "\u{301}",
        "\u{10ffff}",
        "\u{1f600}",
        "\"",
        "'",
        "\\",
        "\n",
        "\r",
        "\t",
        "\u{7f}",
        "\u{85}",
        "\u{2028}",
        "\u{fffd}",
        "…",
        "%s",
        "{}",
        "/",
        ":",
        "#",
    ]);
    let count = prop_oneof![8 => 0..250usize, 1 => Just(4097), 1 => Just(20_000)];
    (piece, count).prop_map(|(piece, count)| piece.repeat(count))
}

/// Arbitrary bytes, up to `max` of them, biased towards `extra`'s syntax so that some of them
/// get past a format's first check.
pub fn raw_bytes(max: usize, extra: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        2 => any::<u8>().prop_map(|b| vec![b]),
        1 => token(extra),
    ];
    proptest::collection::vec(chunk, 0..max).prop_map(|chunks| chunks.concat())
}

/// Runs `parse` twice and panics (failing the property) unless both answers are the same, by
/// `Debug` for a value and by `Display` for an error; returns the first answer.
pub fn parse_twice<T: std::fmt::Debug, E: std::fmt::Display>(
    parse: impl Fn() -> Result<T, E>,
) -> Result<T, E> {
    let first = parse();
    let shown = |r: &Result<T, E>| match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e})"),
    };
    assert_eq!(shown(&first), shown(&parse()), "parsing is deterministic");
    first
}

/// Panics (failing the property) if `message` is empty or longer than
/// [`MAX_MESSAGE_CHARS`] characters.
pub fn assert_short_message(message: &str) {
    let chars = message.chars().count();
    assert!(
        chars > 0 && chars <= MAX_MESSAGE_CHARS,
        "error message of {chars} characters (1 to {MAX_MESSAGE_CHARS} allowed): {:?}",
        message.chars().take(400).collect::<String>()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn mutations_stay_in_bounds_and_change_documents() {
        let mut runner = TestRunner::deterministic();
        let strategy = mutated(Just(b"[1,2,3]".to_vec()), &[b"\"a\""]);
        let mut changed = 0;
        for _ in 0..500 {
            let doc = strategy.new_tree(&mut runner).unwrap().current();
            changed += usize::from(doc != b"[1,2,3]");
        }
        assert!(changed > 400, "{changed} of 500 changed");
        let mut empty = Vec::new();
        Mutation::Flip(Pos(1 << 31), 1).apply(&mut empty);
        Mutation::Delete(Pos(1 << 31), 3).apply(&mut empty);
        Mutation::Insert(Pos(u32::MAX), b"x".to_vec()).apply(&mut empty);
        assert_eq!(empty, b"x");
    }

    #[test]
    fn messages_are_judged_by_characters() {
        assert_short_message(&"é".repeat(MAX_MESSAGE_CHARS));
        assert!(std::panic::catch_unwind(|| assert_short_message("")).is_err());
        assert!(std::panic::catch_unwind(|| assert_short_message(&"x".repeat(301))).is_err());
    }
}
