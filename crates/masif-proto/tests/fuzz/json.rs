//! Structure-aware mutation of JSON bodies: one value or key of a valid body replaced by a
//! hostile one (overlong text of odd characters, extreme numbers, deep nesting, a value of the
//! wrong kind), so that the body still parses as JSON and reaches the protocol's own checks.

use masif_testkit::fuzz::hostile_text;
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => hostile_text().prop_map(Value::String),
        1 => proptest::sample::select(vec![
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::from(-1),
            Value::from(0),
            Value::from(3601),
            Value::from(2_147_483_648_i64),
            Number::from_f64(1.5).map(Value::Number).unwrap(),
            Number::from_f64(1e300).map(Value::Number).unwrap(),
            Value::Null,
            Value::Bool(true),
            Value::Array(vec![]),
            Value::Object(Map::new()),
        ]),
        1 => (1..200usize).prop_map(|depth| {
            (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
        }),
    ]
}

/// Every place in `value` a mutation can hit: each value (root included) and each object key.
fn count_places(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_places).sum(),
        Value::Object(fields) => fields.values().map(|v| 1 + count_places(v)).sum(),
        _ => 0,
    }
}

/// Replaces place `target` of `value` (numbered as [`count_places`] counts) by `new`: a value
/// becomes `new`, a key becomes `new`'s text (or its JSON).
fn replace(value: &mut Value, target: &mut usize, new: &Value) -> bool {
    if *target == 0 {
        *value = new.clone();
        return true;
    }
    *target -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|item| replace(item, target, new)),
        Value::Object(fields) => {
            let keys: Vec<String> = fields.keys().cloned().collect();
            for key in keys {
                if *target == 0 {
                    let inner = fields.remove(&key).unwrap_or(Value::Null);
                    let key = new.as_str().map_or_else(|| new.to_string(), str::to_owned);
                    fields.insert(key, inner);
                    return true;
                }
                *target -= 1;
                if replace(fields.get_mut(&key).unwrap(), target, new) {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// `valid` (a JSON body) with one to three values or keys replaced by hostile ones.
pub fn hostile_leaves(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        valid,
        proptest::collection::vec((any::<u32>(), hostile_value()), 1..4),
    )
        .prop_map(|(body, changes)| {
            let mut doc: Value = serde_json::from_slice(&body).expect("a valid body");
            for (pos, new) in changes {
                let places = count_places(&doc);
                let mut target = ((u64::from(pos) * places as u64) >> 32) as usize;
                replace(&mut doc, &mut target, &new);
            }
            doc.to_string().into_bytes()
        })
}
