//! Structure-aware mutation of YAML documents (the daemons' configuration files): one value
//! or key of a valid document replaced by a hostile one, so that the file still parses as YAML
//! and reaches the configuration's own checks; and YAML's syntax as tokens for byte mutations.

use proptest::prelude::*;
use serde_yaml::{Mapping, Number, Value};

use super::hostile_text;

/// YAML's own syntax, spliced in by byte mutations: anchors, aliases, merge keys, tags, block
/// scalars, flow collections, document markers, directives.
pub const YAML_TOKENS: &[&[u8]] = &[
    b": ",
    b"\n  ",
    b"\n- ",
    b"- ",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"!!binary ",
    b"!!str ",
    b"!!int ",
    b"!custom ",
    b"? ",
    b"|\n  ",
    b">-\n  ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"~",
    b"0x7fffffffffffffff",
    b"0o777",
    b".inf",
    b".nan",
    b"---\n",
    b"...\n",
    b"%YAML 1.2\n",
    b"%TAG ! tag:x,2000:\n",
    b"# ",
    b"\"\\u0000\"",
    b"\"\\x",
    b"yes",
    b"off",
];

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => hostile_text().prop_map(Value::String),
        1 => proptest::sample::select(vec![
            Value::Number(Number::from(u64::MAX)),
            Value::Number(Number::from(i64::MIN)),
            Value::Number(Number::from(-1)),
            Value::Number(Number::from(0)),
            Value::Number(Number::from(65_536)),
            Value::Number(Number::from(1.5)),
            Value::Number(Number::from(f64::INFINITY)),
            Value::Number(Number::from(f64::NAN)),
            Value::Null,
            Value::Bool(false),
            Value::Sequence(vec![]),
            Value::Mapping(Mapping::new()),
        ]),
        1 => (1..200usize).prop_map(|depth| {
            (0..depth).fold(Value::Null, |inner, _| Value::Sequence(vec![inner]))
        }),
    ]
}

/// Every place in `value` a mutation can hit: each value (the root too) and each mapping key.
fn count_places(value: &Value) -> usize {
    1 + match value {
        Value::Sequence(items) => items.iter().map(count_places).sum(),
        Value::Mapping(fields) => fields.values().map(|v| 1 + count_places(v)).sum(),
        Value::Tagged(tagged) => count_places(&tagged.value),
        _ => 0,
    }
}

/// Replaces place `target` of `value` (numbered as [`count_places`] counts) by `new`.
fn replace(value: &mut Value, target: &mut usize, new: &Value) -> bool {
    if *target == 0 {
        *value = new.clone();
        return true;
    }
    *target -= 1;
    match value {
        Value::Sequence(items) => items.iter_mut().any(|item| replace(item, target, new)),
        Value::Tagged(tagged) => replace(&mut tagged.value, target, new),
        Value::Mapping(fields) => {
            let keys: Vec<Value> = fields.keys().cloned().collect();
            for key in keys {
                if *target == 0 {
                    let inner = fields.remove(&key).unwrap_or(Value::Null);
                    fields.insert(new.clone(), inner);
                    return true;
                }
                *target -= 1;
                if replace(
                    fields.get_mut(&key).expect("a key just listed"),
                    target,
                    new,
                ) {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// `valid` (a YAML document) with one to three values or keys replaced by hostile ones.
pub fn hostile_yaml_leaves(valid: &str) -> impl Strategy<Value = String> {
    let doc: Value = serde_yaml::from_str(valid).expect("a valid YAML document");
    proptest::collection::vec((any::<u32>(), hostile_value()), 1..4).prop_map(move |changes| {
        let mut doc = doc.clone();
        for (pos, new) in changes {
            let places = count_places(&doc);
            let mut target = ((u64::from(pos) * places as u64) >> 32) as usize;
            replace(&mut doc, &mut target, &new);
        }
        serde_yaml::to_string(&doc).expect("any YAML value serialises")
    })
}
